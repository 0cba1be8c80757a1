package diagnose

import (
	"fmt"
	"strings"

	"github.com/csrguard/csrguard/internal/buildinfo"
)

// talosPatch114 is the Talos 1.14-and-later machine-config document that
// installs csrguard.
var talosPatch114 = strings.Join([]string{
	"apiVersion: v1alpha1",
	"kind: KubeExternalManifestConfig",
	"name: csrguard",
	"url: " + buildinfo.InstallURL,
}, "\n")

// talosPatchLegacy is the Talos 1.13-and-earlier machine-config patch: the
// rotation switch the approver belongs with, and the manifest.
var talosPatchLegacy = strings.Join([]string{
	"machine:",
	"  kubelet:",
	"    extraArgs:",
	"      rotate-server-certificates: true",
	"cluster:",
	"  extraManifests:",
	"    - " + buildinfo.InstallURL,
}, "\n")

// talosctlPatch is the command that applies csrguard.yaml to the control
// plane, with its addresses when the Nodes tell them.
func (v *view) talosctlPatch() string {
	cp := "<control-plane-ip>"
	if addrs := v.controlPlaneAddresses(); len(addrs) > 0 {
		cp = strings.Join(addrs, ",")
	}
	return "talosctl patch mc --nodes " + cp + " --patch @csrguard.yaml"
}

// installFixes are the steps that install csrguard, the Talos way on Talos.
func (v *view) installFixes() []string {
	if v.talos {
		return []string{
			"Install csrguard through the machine config of the control-plane nodes, so that every rebuilt cluster has it. Save as csrguard.yaml, on Talos 1.14 and later:\n" + talosPatch114,
			"On Talos 1.13 and earlier, save this as csrguard.yaml instead (rotation and its approver belong together):\n" + talosPatchLegacy,
			"Apply it: " + v.talosctlPatch(),
			"To have it at once: kubectl apply -f " + buildinfo.InstallURL,
			"No reboot and no regenerated config are needed: a kubelet picks up its certificate as soon as its newest CSR is approved and issued.",
		}
	}
	return []string{
		"Install csrguard: kubectl apply -f " + buildinfo.InstallURL + "\n" +
			"or: helm install csrguard " + buildinfo.HelmChart + " --namespace csrguard --create-namespace",
		"Keep rotation on only together with an approver: serverTLSBootstrap: true in the KubeletConfiguration (kubeadm: ConfigMap kube-system/kubelet-config).",
		"No kubelet restart is needed: a kubelet picks up its certificate as soon as its newest CSR is approved and issued.",
	}
}

// installFixShort is one line pointing at the installation.
func (v *view) installFixShort() string {
	if v.talos {
		return "Install csrguard so it does not recur: the KubeExternalManifestConfig (Talos 1.14+) or cluster.extraManifests (older) patch with " + buildinfo.InstallURL + " (see finding " + IDNoApprover + "), then " + v.talosctlPatch()
	}
	return "Install csrguard so it does not recur: kubectl apply -f " + buildinfo.InstallURL + " (or helm install csrguard " + buildinfo.HelmChart + ")"
}

// breakGlassFixes approve pending CSRs once, by the policy, before an
// approver runs. csrs names the CSRs concerned.
func (v *view) breakGlassFixes(csrs []string) []string {
	fixes := []string{
		"Now, once: csrguard approve — break-glass: applies the controller's policy to the pending CSRs and approves those that pass.",
	}
	if len(csrs) > 0 {
		explain := csrs[len(csrs)-1]
		fixes = append(fixes, fmt.Sprintf("By hand instead, only after checking each CSR's SANs (csrguard explain %s): kubectl certificate approve %s. Never approve all CSRs blindly: a node could ask for kubernetes.default.svc.", explain, names(csrs, 5)))
	}
	return fixes
}

// kubeletLogFix says where to read the kubelet's own account.
func (v *view) kubeletLogFix(nodes []string) string {
	node := "<node>"
	if len(nodes) > 0 {
		node = nodes[0]
	}
	if v.talos {
		return fmt.Sprintf("Read the kubelet's log: talosctl -n %s logs kubelet | grep -i certificate", v.nodeAddress(node))
	}
	return fmt.Sprintf("Read the kubelet's log on %s: journalctl -u kubelet | grep -i certificate", node)
}
