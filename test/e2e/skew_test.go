package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestPre127KubeletUsages: a kubelet older than 1.27 asks for key
// encipherment with its ECDSA key (it used one usage set for every key type).
// csrguard approves that set, the signer of this control plane issues it, and
// the kubelet serves the certificate. make test-matrix runs the whole suite
// with kubelets three minors older than the API server too (kubelet.VersionEnv).
func TestPre127KubeletUsages(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true)
	cfg, err := c.cp.NodeConfig("old-1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := kubelet.Start(ctx, kubelet.Options{Name: "old-1", Config: cfg, Addresses: kubelet.Addresses("old-1", c.pool.Next()), Version: "v1.26.15"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	if _, err := k.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	csrs := c.csrsOf(ctx, "old-1")
	if len(csrs) != 1 {
		t.Fatalf("CSRs of old-1: %d, want 1", len(csrs))
	}
	got := slices.Clone(csrs[0].Spec.Usages)
	slices.Sort(got)
	want := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("usages of the pre-1.27 kubelet's CSR (-got +want):\n%s", diff)
	}
	if _, err := handshake(ctx, k.Endpoint(), pool(t, c.cp.KubeletServingCAPEM)); err != nil {
		t.Errorf("handshake with the pre-1.27 kubelet: %v", err)
	}
}
