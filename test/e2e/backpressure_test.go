package e2e

import (
	"fmt"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
)

// TestBackPressure: with the API server's Priority and Fairness giving csrguard one seat and a
// queue of one, csrguard (its defaults: no client-side rate limit) meets a backlog of pending
// CSRs with all its workers at once. It must slow down, not drop: every CSR ends approved, the
// requests answered 429 are retried, and it makes a bounded number of requests per CSR (client-go
// tries one request at most 11 times), so it does not spin. make bench --backpressure-nodes
// measures the same at a larger size.
func TestBackPressure(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})

	// csrguard runs as its ServiceAccount would (an administrator is exempt from Priority and
	// Fairness), with every permission: this test is about pacing, not RBAC.
	const user = "system:serviceaccount:csrguard:csrguard"
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-backpressure"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := c.admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.cp.UserConfig(user, "system:serviceaccounts", "system:serviceaccounts:csrguard")
	if err != nil {
		t.Fatal(err)
	}
	c.guardConfig = cfg
	if err := c.cp.Throttle(ctx, user, 1); err != nil {
		t.Fatal(err)
	}

	// The backlog is filed before csrguard starts, so its workers all ask at once.
	const n = 40
	for i := range n {
		name := fmt.Sprintf("bp-%02d", i)
		ip := c.pool.Next()
		cs := c.nodeClient(name)
		c.registerNode(ctx, cs, name, []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}})
		c.createCSR(ctx, cs, csrtest.New(t, csrtest.Node(name), csrtest.Name("csr-"+name), csrtest.IPAddresses(ip.String()), csrtest.DNSNames(name)))
	}
	g := c.startCSRGuard(ctx, "csrguard", false)

	controlplane.Eventually(t, ctx, "every CSR approved", func() bool {
		list, err := c.admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		approved := 0
		for _, csr := range list.Items {
			for _, cond := range csr.Status.Conditions {
				if cond.Type == certificatesv1.CertificateDenied {
					t.Fatalf("CSR %s denied under back-pressure: %s", csr.Name, cond.Message)
				}
				if cond.Type == certificatesv1.CertificateApproved {
					approved++
				}
			}
		}
		return approved == n
	})

	s := g.scrape(ctx)
	var requests, throttled float64
	if mf := s.families["rest_client_requests_total"]; mf != nil {
		for _, m := range mf.Metric {
			requests += m.GetCounter().GetValue()
			for _, l := range m.Label {
				if l.GetName() == "code" && l.GetValue() == "429" {
					throttled += m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Logf("csrguard made %.0f API requests for %d CSRs, %.0f answered 429", requests, n, throttled)
	if throttled == 0 {
		t.Fatal("no request was answered 429: Priority and Fairness did not throttle csrguard, so the test shows nothing")
	}
	// Start-up (lists, watches, discovery, its records) included.
	if perCSR := requests / n; perCSR > 11 {
		t.Errorf("csrguard made %.1f API requests per CSR, more than client-go's 11 attempts of one write: it spins", perCSR)
	}
}
