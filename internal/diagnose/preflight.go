package diagnose

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/certificate"

	"github.com/csrguard/csrguard/internal/buildinfo"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// Node outcomes of a preflight.
const (
	OutcomeIssued    = "would-be-issued"
	OutcomePending   = "would-stay-pending"
	OutcomeHeld      = "would-be-held"
	OutcomeDenied    = "would-be-denied"
	OutcomeNoRequest = "no-request"
)

// NodePlan is what would happen to one node's first serving CSR if rotation
// were turned on now.
type NodePlan struct {
	Node    string        `json:"node"`
	SANs    []string      `json:"sans"`
	Verdict string        `json:"policyVerdict"`
	Reason  policy.Reason `json:"reason,omitempty"`
	Outcome string        `json:"outcome"`
	Message string        `json:"message"`
}

// PreflightCheck is one cluster-wide precondition.
type PreflightCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// PreflightReport answers "if I turn on kubelet serving-certificate rotation
// now, will every node get a certificate?".
type PreflightReport struct {
	OK       bool             `json:"ok"`
	Nodes    []NodePlan       `json:"nodes"`
	Checks   []PreflightCheck `json:"checks"`
	Rollback []string         `json:"rollback"`
	// Suggestions harden the policy before the change; they do not fail it.
	Suggestions []string `json:"suggestions,omitempty"`
}

// KubeletRequest builds the serving CSR node's kubelet would file, from
// servingcsr.KubeletTemplate: CN system:node:<name>, O system:nodes, SANs
// from status.addresses, ECDSA key, the kubelet's default usages, signed by
// key, created at created. ok is false when the node reports no IP: the
// kubelet then files nothing.
func KubeletRequest(node *corev1.Node, key crypto.Signer, created time.Time) (req servingcsr.Request, ok bool, err error) {
	tmpl := servingcsr.KubeletTemplate(node.Name, node.Status.Addresses)
	if tmpl == nil {
		return req, false, nil
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return req, false, fmt.Errorf("build CSR for node %q: %w", node.Name, err)
	}
	return servingcsr.Request{
		Name:       "preflight-" + node.Name,
		SignerName: certificatesv1.KubeletServingSignerName,
		Username:   "system:node:" + node.Name,
		Groups:     []string{"system:nodes", "system:authenticated"},
		Usages:     certificate.DefaultKubeletServingGetUsages(key),
		PEM:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		Created:    created,
	}, true, nil
}

// finalVerdictTime is when the policy gives a request node's kubelet filed
// settle (and a second) earlier its final verdict rather than a settle-time
// hold: now, or, for a Node younger than that, when it is that old.
func finalVerdictTime(node *corev1.Node, now time.Time, settle time.Duration) time.Time {
	if end := node.CreationTimestamp.Add(settle + time.Second); end.After(now) {
		return end
	}
	return now
}

// Preflight evaluates, for every node of s, the CSR its kubelet would file,
// and checks that an approver runs and the signer issues. rbac, when not nil,
// is the result of checking that the approver may approve.
func Preflight(ctx context.Context, s Snapshot, cfg policy.Config, key crypto.Signer, rbac *PreflightCheck) (PreflightReport, error) {
	v := newView(s)
	r := PreflightReport{OK: true}
	approver := approverCheck(v)
	r.Checks = append(r.Checks, approver, signerCheck(v))
	if rbac != nil {
		r.Checks = append(r.Checks, *rbac)
	}
	facts := policy.NewSnapshotFacts(s.policySnapshot())
	for i := range s.Nodes {
		n := &s.Nodes[i]
		at := finalVerdictTime(n, s.Now, cfg.AddressSettleTime)
		req, ok, err := KubeletRequest(n, key, at.Add(-cfg.AddressSettleTime-time.Second))
		if err != nil {
			return r, err
		}
		plan := NodePlan{Node: n.Name, SANs: monitor.ExpectedSANs(n.Status.Addresses)}
		if !ok {
			plan.Outcome, plan.Message = OutcomeNoRequest, "the node reports no IP address: its kubelet files no serving CSR and serves no certificate"
			r.Nodes = append(r.Nodes, plan)
			r.OK = false
			continue
		}
		d, err := policy.Evaluate(ctx, cfg, req, facts, at)
		if err != nil {
			return r, fmt.Errorf("evaluate node %q: %w", n.Name, err)
		}
		plan.Verdict, plan.Reason, plan.Message = d.Verdict.String(), d.Reason, d.Message
		switch {
		case d.Verdict == policy.Deny:
			plan.Outcome = OutcomeDenied
		case d.Verdict == policy.Hold:
			plan.Outcome = OutcomeHeld
		case !approver.OK:
			plan.Outcome, plan.Message = OutcomePending, "the policy would approve it, but nothing approves kubelet-serving CSRs: it would stay Pending and the kubelet would answer TLS with 'tls: internal error'"
		default:
			plan.Outcome = OutcomeIssued
		}
		if plan.Outcome != OutcomeIssued {
			r.OK = false
		}
		r.Nodes = append(r.Nodes, plan)
	}
	sort.Slice(r.Nodes, func(i, j int) bool { return r.Nodes[i].Node < r.Nodes[j].Node })
	for _, c := range r.Checks {
		// A signer not yet seen issuing is a warning, not a failure: on a
		// cluster without rotation there is nothing to have seen.
		if !c.OK && c.Name != "signer" {
			r.OK = false
		}
	}
	r.Rollback = rollback(v)
	var advice []*Finding
	if len(cfg.AllowedNodeCIDRs) == 0 {
		advice = append(advice, v.allowedNodeCIDRs())
	}
	for _, f := range append(advice, v.podCIDRsNotReserved(), v.serviceCIDRsUnknown()) {
		if f != nil {
			r.Suggestions = append(r.Suggestions, fmt.Sprintf("%s: %s", f.Title, strings.Join(f.Fix[1:], "; ")))
		}
	}
	return r, nil
}

func approverCheck(v *view) PreflightCheck {
	c := PreflightCheck{Name: "approver"}
	if a := v.approving(); len(a) > 0 {
		c.OK, c.Detail = true, fmt.Sprintf("%s (%s) is running and approving: %s", a[0].Where, a[0].Kind, a[0].Detail)
		return c
	}
	c.Detail = "no approver is running: install csrguard first: kubectl apply -f " + buildinfo.InstallURL
	if v.talos {
		c.Detail = "no approver is running: install csrguard first, through the machine config (KubeExternalManifestConfig on Talos 1.14+, cluster.extraManifests before) with " + buildinfo.InstallURL
	}
	return c
}

// signerCheck looks for evidence that the signer issues kubelet-serving
// certificates: an approved CSR of the last hour with a certificate.
func signerCheck(v *view) PreflightCheck {
	c := PreflightCheck{Name: "signer"}
	var approved, issued int
	for _, cv := range v.csrs {
		if cv.age > time.Hour {
			continue
		}
		switch cv.state {
		case "Issued":
			approved++
			issued++
		case "Approved", "Failed":
			approved++
		}
	}
	switch {
	case issued > 0:
		c.OK, c.Detail = true, fmt.Sprintf("%d of %d kubelet-serving CSRs approved in the last hour were issued", issued, approved)
	case approved > 0:
		c.Detail = fmt.Sprintf("%d kubelet-serving CSRs approved in the last hour, none issued: is kube-controller-manager's csrsigning controller running with a kubelet-serving CA (--cluster-signing-kubelet-serving-cert-file or --cluster-signing-cert-file)?", approved)
	default:
		c.Detail = "no kubelet-serving CSR approved in the last hour: cannot tell yet whether the signer issues them (it does by default with --cluster-signing-cert-file)"
	}
	return c
}

func rollback(v *view) []string {
	lines := []string{"If kubelets end up without serving certificates, turn rotation off again; kubelets then serve self-signed certificates (metrics-server needs --kubelet-insecure-tls meanwhile, and kubectl logs/exec work again)."}
	if v.talos {
		lines = append(lines,
			"Talos 1.14+: remove rotate-server-certificates from the KubeletConfig document (talosctl edit mc --nodes <node>), or on Talos 1.13 and earlier delete machine.kubelet.extraArgs.rotate-server-certificates; Talos restarts the kubelet, no reboot needed.",
			"Check with: talosctl -n <node> logs kubelet | grep -i certificate")
	} else {
		lines = append(lines,
			"kubeadm: set serverTLSBootstrap: false (or remove it) in /var/lib/kubelet/config.yaml and in the kubelet-config ConfigMap (kubectl -n kube-system edit cm kubelet-config), then systemctl restart kubelet on each node.",
			"Break-glass instead of rolling back: csrguard approve --dry-run, then csrguard approve.")
	}
	return lines
}
