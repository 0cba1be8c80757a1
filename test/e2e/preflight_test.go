package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestPreflight: before rotation is turned on, preflight says every node's
// CSR would stay pending while no approver runs; with csrguard running it is
// happy; and nodes whose addresses are reserved or shared are named as ones
// that would be denied.
func TestPreflight(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	for _, name := range []string{"node-1", "node-2"} {
		c.registerNode(ctx, c.nodeClient(name), name, kubelet.Addresses(name, c.pool.Next()))
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, c.cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}
	preflight := func() (map[string]string, int) {
		t.Helper()
		out, code := runCLI(t, ctx, "preflight", "-o", "json", "--kubeconfig="+kubeconfig)
		var r struct {
			Nodes []struct{ Node, Outcome string }
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("preflight -o json: %v\n%s", err, out)
		}
		got := map[string]string{}
		for _, n := range r.Nodes {
			got[n.Node] = n.Outcome
		}
		return got, code
	}

	got, code := preflight()
	if code == 0 {
		t.Error("preflight exited 0 with no approver installed")
	}
	if diff := cmp.Diff(got, map[string]string{"node-1": "would-stay-pending", "node-2": "would-stay-pending"}); diff != "" {
		t.Errorf("preflight without an approver (-got +want):\n%s", diff)
	}

	c.startCSRGuard(ctx, "csrguard", true, "--leader-elect=true", "--namespace=csrguard")
	controlplane.Eventually(t, ctx, "preflight to pass with csrguard running", func() bool {
		got, code = preflight()
		return code == 0
	})
	if diff := cmp.Diff(got, map[string]string{"node-1": "would-be-issued", "node-2": "would-be-issued"}); diff != "" {
		t.Errorf("preflight with csrguard (-got +want):\n%s", diff)
	}

	shared := c.pool.Next()
	c.registerNode(ctx, c.nodeClient("metadata-squatter"), "metadata-squatter", kubelet.Addresses("metadata-squatter", c.pool.Next(),
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "169.254.169.254"}))
	// twin-a reports the address first and so owns it (csrguard records the
	// claim); twin-b, reporting it later, would be refused.
	c.registerNode(ctx, c.nodeClient("twin-a"), "twin-a", kubelet.Addresses("twin-a", shared))
	c.waitClaim(ctx, shared.String(), "twin-a")
	c.registerNode(ctx, c.nodeClient("twin-b"), "twin-b", kubelet.Addresses("twin-b", shared))
	got, code = preflight()
	if code == 0 {
		t.Error("preflight exited 0 with nodes that would be denied")
	}
	want := map[string]string{
		"node-1": "would-be-issued", "node-2": "would-be-issued", "twin-a": "would-be-issued",
		"metadata-squatter": "would-be-denied", "twin-b": "would-be-denied",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("preflight with bad nodes (-got +want):\n%s", diff)
	}
}

// TestPreflightWithoutLeaderElection: csrguard run with a kubeconfig elects
// no leader and holds no Lease; preflight knows it by its recent approvals.
func TestPreflightWithoutLeaderElection(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true)
	k := c.addKubelet(ctx, "node-1", kubelet.Debian)
	if _, err := k.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, c.cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}
	// The premise: there is no Lease to find csrguard by.
	leases, err := c.admin.CoordinationV1().Leases(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=csrguard"})
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Items) != 0 {
		t.Fatalf("csrguard holds a Lease: %v", leases.Items)
	}
	out, code := runCLI(t, ctx, "preflight", "-o", "json", "--kubeconfig="+kubeconfig)
	var r struct {
		Checks []struct {
			Name   string
			OK     bool
			Detail string
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("preflight -o json: %v\n%s", err, out)
	}
	if code != 0 || len(r.Checks) == 0 || r.Checks[0].Name != "approver" || !r.Checks[0].OK ||
		!strings.HasPrefix(r.Checks[0].Detail, "CertificateSigningRequest ") {
		t.Errorf("preflight exited %d with checks %+v; want 0 and csrguard found by its approval", code, r.Checks)
	}
}
