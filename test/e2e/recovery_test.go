package e2e

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestRecoveryAfterOutage replays the end of a long outage: 20 nodes each
// have 12 pending kubelet-serving CSRs — 11 their kubelets gave up on (filed
// as the node, for the node's own addresses, each with its own key, as a
// kubelet refiles every 15 minutes) and the newest, which the running
// kubelet waits for — and csrguard then starts. Within 30 s every kubelet
// serves a certificate; each node has exactly one approved CSR, its newest;
// the abandoned ones are denied as Superseded and none is approved, although
// the policy passes every one of them and the per-node limit (10 an hour)
// is smaller than the backlog.
func TestRecoveryAfterOutage(t *testing.T) {
	const nodes, pending = 20, 12
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})

	abandoned := map[string]bool{}
	for i := range nodes {
		name := fmt.Sprintf("recovering-%02d", i)
		addrs := kubelet.Addresses(name, c.pool.Next())
		cs := c.nodeClient(name)
		for j := range pending - 1 {
			// Named to sort before the kubelet's csr-…, so that one created in
			// the same second is still older.
			csr := c.createCSR(ctx, cs, csrtest.New(t, csrtest.Node(name), csrtest.Name(fmt.Sprintf("abandoned-%s-%02d", name, j)),
				csrtest.DNSNames(name), csrtest.IPAddresses(addrs[0].Address)))
			abandoned[csr.Name] = true
		}
		c.addKubelet(ctx, name, kubelet.Debian, addrs...)
	}
	newest := map[string]string{} // node -> the CSR its kubelet waits for
	controlplane.Eventually(t, ctx, fmt.Sprintf("%d pending CSRs from each of %d nodes", pending, nodes), func() bool {
		for _, k := range c.nodes {
			csrs := c.csrsOf(ctx, k.Name())
			if len(csrs) != pending {
				return false
			}
			for _, csr := range csrs {
				if !abandoned[csr.Name] {
					newest[k.Name()] = csr.Name
				}
			}
		}
		return true
	})

	start := time.Now()
	g := c.startCSRGuard(ctx, "csrguard", false)
	recovered, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, k := range c.nodes {
		if _, err := k.WaitForCertificate(recovered, nil); err != nil {
			t.Fatalf("%v (%s after csrguard started)", err, time.Since(start).Round(time.Millisecond))
		}
	}
	t.Logf("%d nodes × %d pending CSRs: every kubelet serves a certificate %s after csrguard started",
		nodes, pending, time.Since(start).Round(time.Millisecond))

	// The abandoned CSRs are cleaned up once each node's newest is approved.
	controlplane.Eventually(t, ctx, "every abandoned CSR denied", func() bool {
		for _, k := range c.nodes {
			for _, csr := range c.csrsOf(ctx, k.Name()) {
				if abandoned[csr.Name] && servingcsr.StateOf(&csr) == servingcsr.Pending {
					return false
				}
			}
		}
		return true
	})
	for _, k := range c.nodes {
		var approved []string
		for _, csr := range c.csrsOf(ctx, k.Name()) {
			if hasCondition(&csr, certificatesv1.CertificateApproved) {
				approved = append(approved, csr.Name)
			}
			if abandoned[csr.Name] {
				if r := condition(&csr, certificatesv1.CertificateDenied).Reason; r != servingcsr.SupersededReason {
					t.Errorf("%s: abandoned CSR %s is %s (denial reason %q), want denied as %s", k.Name(), csr.Name, servingcsr.StateOf(&csr), r, servingcsr.SupersededReason)
				}
			}
		}
		if len(approved) != 1 || approved[0] != newest[k.Name()] {
			t.Errorf("%s: approved %v, want exactly its newest CSR %s", k.Name(), approved, newest[k.Name()])
		}
	}

	s := g.scrape(ctx)
	for _, want := range []struct {
		series string
		labels []string
		value  float64
	}{
		{"csrguard_csr_writes_total", []string{"verdict", "approve"}, nodes},
		{"csrguard_csr_writes_total", []string{"verdict", "supersede"}, nodes * (pending - 1)},
		{"csrguard_decisions_total", []string{"verdict", "supersede"}, nodes * (pending - 1)},
		{"csrguard_pending_csrs", nil, 0},
	} {
		if got := s.value(want.series, want.labels...); got != want.value {
			t.Errorf("%s{%s} = %v, want %v", want.series, strings.Join(want.labels, "="), got, want.value)
		}
	}
	if got := s.value("csrguard_decisions_total", "verdict", "hold", "reason", "RateLimited"); !math.IsNaN(got) {
		t.Errorf("csrguard held %v approvals RateLimited; superseded CSRs must not use up the node limit", got)
	}
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	return condition(csr, t).Status == corev1.ConditionTrue
}

func condition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequestCondition {
	for _, c := range csr.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return certificatesv1.CertificateSigningRequestCondition{}
}

// TestSupersedingCannotBeSteered: a compromised node, with its own
// credentials, files hostile CSRs newer than the one its kubelet waits for —
// one for a reserved name, a newest one for its neighbour's address (not on its own Node) — before
// csrguard starts. The newer CSRs do not strand the kubelet's: each hostile
// one is denied for its own reason (so its alert fires; none is hidden as
// Superseded), and then the kubelet's CSR is live again and approved. The
// neighbour's CSR is decided as if the attacker did not exist.
func TestSupersedingCannotBeSteered(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	victim := c.addKubelet(ctx, "victim", kubelet.Debian)
	mallory := c.addKubelet(ctx, "mallory", kubelet.Debian)
	victimCSR := c.waitPending(ctx, victim.Name()).Name
	malloryCSR := c.waitPending(ctx, mallory.Name()).Name
	ip := mallory.Addresses()[0].Address
	cs := c.nodeClient(mallory.Name())
	// Named to sort after the kubelet's csr-…: newer even within its second.
	reserved := c.createCSR(ctx, cs, csrtest.New(t, csrtest.Node(mallory.Name()), csrtest.Name("zz-mallory-reserved"),
		csrtest.DNSNames(mallory.Name(), "kubernetes.default.svc"), csrtest.IPAddresses(ip))).Name
	neighbour := c.createCSR(ctx, cs, csrtest.New(t, csrtest.Node(mallory.Name()), csrtest.Name("zz-mallory-zneighbour"),
		csrtest.IPAddresses(victim.Addresses()[0].Address))).Name

	c.startCSRGuard(ctx, "csrguard", true)
	for _, k := range c.nodes {
		if _, err := k.WaitForCertificate(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	controlplane.Eventually(t, ctx, "the hostile CSRs decided", func() bool {
		return c.state(ctx, reserved) != "Pending" && c.state(ctx, neighbour) != "Pending"
	})
	for name, want := range map[string]string{reserved: "ReservedName", neighbour: "SANNotOnNode"} {
		if got := c.denyReason(ctx, name); got != want {
			t.Errorf("hostile CSR %s: state %s, denial reason %q, want denied %s", name, c.state(ctx, name), got, want)
		}
	}
	for _, name := range []string{victimCSR, malloryCSR} {
		if s := c.state(ctx, name); s != "Issued" {
			t.Errorf("kubelet CSR %s is %s, want Issued", name, s)
		}
	}
}

// TestSupersedeCascadeIsLinear is an attack: a node files n CSRs csrguard denies, all pending when
// it starts, so that they are decided newest first, one at a time. Each decision must requeue only
// the CSR it can make live: requeuing every older one cost n²/2 reconciles, each listing the
// node's n CSRs.
func TestSupersedeCascadeIsLinear(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	mallory := c.addKubelet(ctx, "mallory", kubelet.Debian)
	kubeletCSR := c.waitPending(ctx, mallory.Name()).Name
	cs := c.nodeClient(mallory.Name())
	const n = 60
	hostile := csrtest.New(t, csrtest.Node(mallory.Name()), csrtest.DNSNames(mallory.Name(), "kubernetes.default.svc"))
	var names []string
	for i := range n {
		csr := hostile.DeepCopy()
		csr.Name = fmt.Sprintf("zz-mallory-%03d", i) // newer than the kubelet's, in order
		names = append(names, c.createCSR(ctx, cs, csr).Name)
	}
	// No backstop retries: only the watches requeue.
	g := c.startCSRGuard(ctx, "csrguard", true, "--hold-retry=1h")
	if _, err := mallory.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	controlplane.Eventually(t, ctx, "the hostile CSRs denied", func() bool {
		for _, name := range names {
			if c.denyReason(ctx, name) != "ReservedName" {
				return false
			}
		}
		return true
	})
	if s := c.state(ctx, kubeletCSR); s != "Issued" {
		t.Errorf("kubelet CSR %s is %s, want Issued", kubeletCSR, s)
	}
	s := g.scrape(ctx)
	var reconciles float64
	for _, result := range []string{"success", "error", "requeue", "requeue_after"} {
		if v := s.value("controller_runtime_reconcile_total", "controller", "kubelet-serving-csr", "result", result); !math.IsNaN(v) {
			reconciles += v
		}
	}
	if reconciles > 4*n {
		t.Errorf("%v reconciles to decide %d CSRs of one node, want at most %d", reconciles, n+1, 4*n)
	}
	t.Logf("%v reconciles for %d CSRs", reconciles, n+1)
}

// TestImpostorCannotHoldBackKubelet is an attack: a user another authenticator names
// system:node:<victim>, outside system:nodes, files a CSR newer than the victim kubelet's. In
// no-deny mode csrguard leaves it pending for a human; the kubelet's CSR must not wait behind it.
func TestImpostorCannotHoldBackKubelet(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.allowCSRCreation(ctx, "csrguard-e2e-requesters")
	victim := c.addKubelet(ctx, "victim", kubelet.Debian)
	kubeletCSR := c.waitPending(ctx, victim.Name()).Name
	impostor := c.userClient("system:node:"+victim.Name(), "csrguard-e2e-requesters")
	name := c.createCSR(ctx, impostor, csrtest.New(t, csrtest.Node(victim.Name()), csrtest.Name("zz-impostor"),
		csrtest.IPAddresses(victim.Addresses()[0].Address))).Name
	c.startCSRGuard(ctx, "csrguard", true, "--mode=no-deny")
	if _, err := victim.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if s := c.state(ctx, kubeletCSR); s != "Issued" {
		t.Errorf("kubelet CSR %s is %s, want Issued", kubeletCSR, s)
	}
	if s := c.state(ctx, name); s != "Pending" {
		t.Errorf("impostor CSR %s is %s, want Pending (no-deny)", name, s)
	}
}
