package e2e

import (
	"context"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestAPIServerAddressRemembered: an API server that is not a Node drops out
// of the kubernetes EndpointSlice (it restarts, or is unready). A node that
// then writes that address into its own status and asks for it is refused,
// by csrguard as it ran when the address was listed and by a csrguard
// started afresh afterwards, which only its record can tell.
func TestAPIServerAddressRemembered(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	g := c.startCSRGuard(ctx, "csrguard", true, "--discovery-interval=500ms")

	// A second API server, at an address no Node reports and the first API
	// server's certificate does not name, joins the EndpointSlice.
	second := netip.MustParseAddr("192.0.2.11")
	c.setAPIServerEndpoints(ctx, c.cp.AdvertiseAddress, second)
	c.waitRemembered(ctx, second.String(), "endpointslice")
	// The API server's own certificate is a source too.
	c.waitRemembered(ctx, c.cp.AdvertiseAddress.String(), "certificate")

	// It drops out. csrguard rereads the slice every 500ms, and holds the
	// node's request below for the settle time (3s) before it decides, so it
	// decides on a slice without the address.
	c.setAPIServerEndpoints(ctx, c.cp.AdvertiseAddress)
	squat := func(name string) string {
		t.Helper()
		k := c.addKubelet(ctx, name, kubelet.Debian, kubelet.Addresses(name, c.pool.Next(),
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: second.String()})...)
		csr := c.waitPending(ctx, k.Name())
		controlplane.Eventually(t, ctx, "the CSR of "+name+" decided", func() bool { return c.state(ctx, csr.Name) != "Pending" })
		return csr.Name
	}
	csr := squat("squatter-1")
	if got, reason := c.state(ctx, csr), c.denyReason(ctx, csr); got != "Denied" || reason != string(policy.ReservedAddress) {
		t.Errorf("CSR for a remembered API server address: %s (%s), want Denied (ReservedAddress)", got, reason)
	}

	// A new csrguard process: the EndpointSlice no longer shows the address,
	// only the record does.
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	c.startCSRGuard(ctx, "csrguard-restarted", true, "--discovery-interval=500ms")
	csr = squat("squatter-2")
	if got, reason := c.state(ctx, csr), c.denyReason(ctx, csr); got != "Denied" || reason != string(policy.ReservedAddress) {
		t.Errorf("after a restart, CSR for a remembered API server address: %s (%s), want Denied (ReservedAddress)", got, reason)
	}
}

// TestSquatterCannotDenyOwner: node "owner" has a certificate; node
// "squatter" then writes the owner's address into its own status. The
// owner's next rotation is approved, the squatter's request is denied, and
// csrguard reports the conflict, which fires the alert.
func TestSquatterCannotDenyOwner(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	g := c.startCSRGuard(ctx, "csrguard", true)
	owner := c.addKubelet(ctx, "owner", kubelet.Talos)
	first, err := owner.WaitForCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ownerIP := owner.Addresses()[0].Address
	c.waitClaim(ctx, ownerIP, "owner")

	squatter := c.addKubelet(ctx, "squatter", kubelet.Debian, kubelet.Addresses("squatter", c.pool.Next(),
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ownerIP})...)
	squatCSR := c.waitPending(ctx, squatter.Name())
	controlplane.Eventually(t, ctx, "the squatter's CSR denied", func() bool { return c.state(ctx, squatCSR.Name) == "Denied" })
	if reason := c.denyReason(ctx, squatCSR.Name); reason != string(policy.SANOfOtherNode) {
		t.Errorf("squatter's CSR denied with %s, want SANOfOtherNode", reason)
	}

	// The owner rotates while the squatter still reports its address.
	go func() { _ = owner.Rotate(ctx) }()
	if _, err := owner.WaitForCertificate(ctx, first); err != nil {
		t.Fatalf("the owner's rotation: %v", err)
	}
	for _, csr := range c.csrsOf(ctx, "owner") {
		if s := c.state(ctx, csr.Name); s != "Issued" {
			t.Errorf("owner's CSR %s: %s, want Issued", csr.Name, s)
		}
	}

	var s scrape
	controlplane.Eventually(t, ctx, "the conflict reported", func() bool {
		s = g.scrape(ctx)
		return s.value("csrguard_node_address_conflicts", "node", "squatter") == 1
	})
	if v := s.value("csrguard_node_address_conflicts", "node", "owner"); !math.IsNaN(v) {
		t.Errorf("the owner is reported in conflict (%v), want only the squatter", v)
	}
	// (The denial alerts need the counters to grow, which a held capture does
	// not: test/alerts covers them.)
	c.checkAlerts(ctx, s, map[string][]string{"CSRGuardAddressConflict": {"squatter"}})
}

// setAPIServerEndpoints replaces the addresses of the kubernetes EndpointSlice.
func (c *cluster) setAPIServerEndpoints(ctx context.Context, addrs ...netip.Addr) {
	c.t.Helper()
	slice, err := c.admin.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	var ips []string
	for _, a := range addrs {
		ips = append(ips, a.String())
	}
	ready := true
	slice.Endpoints = []discoveryv1.Endpoint{{Addresses: ips, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}
	if _, err := c.admin.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// waitRemembered waits until csrguard's record of the API server's identity
// holds key, seen through source.
func (c *cluster) waitRemembered(ctx context.Context, key, source string) {
	c.t.Helper()
	reader, err := client.New(c.cp.AdminConfig(), client.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	store := history.NewStore(reader, nil, guardNamespace)
	controlplane.Eventually(c.t, ctx, "csrguard to remember "+key+" from "+source, func() bool {
		id, err := store.LoadIdentity(ctx)
		return err == nil && slices.Contains(id[key].Sources, source)
	})
}

// denyReason returns the reason of a CSR's Denied condition, or "".
func (c *cluster) denyReason(ctx context.Context, name string) string {
	csr, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, cond := range csr.Status.Conditions {
		if cond.Type == certificatesv1.CertificateDenied {
			return cond.Reason
		}
	}
	return ""
}
