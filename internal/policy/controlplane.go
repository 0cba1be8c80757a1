package policy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	kubeletapis "k8s.io/kubelet/pkg/apis"
)

// Control-plane role labels that kubeadm and Talos (control-plane) and older installers
// (master) put on control-plane Nodes; DefaultConfig trusts both.
const (
	ControlPlaneLabel       = "node-role.kubernetes.io/control-plane"
	LegacyControlPlaneLabel = "node-role.kubernetes.io/master"
)

// isControlPlane reports whether Node labels carry one of the control-plane labels of cfg: a
// "key" matches any value, a "key=value" that value only.
func (c Config) isControlPlane(labels map[string]string) (string, bool) {
	for _, sel := range c.ControlPlaneLabels {
		key, want, exact := strings.Cut(sel, "=")
		if v, ok := labels[key]; ok && (!exact || v == want) {
			return sel, true
		}
	}
	return "", false
}

// IsControlPlane reports whether Node labels mark a control-plane node under cfg.
func (c Config) IsControlPlane(labels map[string]string) bool {
	_, ok := c.isControlPlane(labels)
	return ok
}

// ControlPlaneLabelKeys returns the label keys of cfg's control-plane labels, for caches that
// keep only those.
func (c Config) ControlPlaneLabelKeys() []string {
	keys := make([]string, 0, len(c.ControlPlaneLabels))
	for _, sel := range c.ControlPlaneLabels {
		key, _, _ := strings.Cut(sel, "=")
		keys = append(keys, key)
	}
	return keys
}

// ValidateControlPlaneLabel says why sel ("key" or "key=value") cannot mark control-plane
// Nodes, or returns nil. The exemption for API server addresses rests on a label a
// compromised node cannot put on itself, so the key must be one the NodeRestriction
// admission plugin forbids kubelets to set: in the node-restriction.kubernetes.io namespace,
// or in kubernetes.io or k8s.io and not one of the labels kubelets may set (such as
// kubernetes.io/hostname or anything under node.kubernetes.io).
func ValidateControlPlaneLabel(sel string) error {
	key, value, exact := strings.Cut(sel, "=")
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return fmt.Errorf("%q is not a valid label key: %s", key, strings.Join(errs, "; "))
	}
	if exact {
		if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
			return fmt.Errorf("%q is not a valid label value: %s", value, strings.Join(errs, "; "))
		}
	}
	if !nodeRestricted(key) {
		return fmt.Errorf("a kubelet may set label %q on its own Node (NodeRestriction protects only kubernetes.io and k8s.io labels kubelets may not set, and node-restriction.kubernetes.io/), so it cannot mark control-plane nodes", key)
	}
	return nil
}

// nodeRestricted reports whether the NodeRestriction admission plugin forbids a kubelet to
// add, change or remove the label key on its own Node, exactly as its getForbiddenLabels does.
func nodeRestricted(key string) bool {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	inDomain := func(domain string) bool { return ns == domain || strings.HasSuffix(ns, "."+domain) }
	if inDomain("node-restriction.kubernetes.io") {
		return true
	}
	return (inDomain("kubernetes.io") || inDomain("k8s.io")) && !kubeletapis.IsKubeletLabel(key)
}
