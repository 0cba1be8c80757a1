package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// decide evaluates csr against one node-a at 10.0.0.10 in a cluster whose
// API server is 10.96.0.1.
func decide(t *testing.T, csr *certificatesv1.CertificateSigningRequest, now time.Time) policy.Decision {
	t.Helper()
	facts := policy.NewSnapshotFacts(policy.Snapshot{Nodes: []policy.Node{{Name: "node-a", Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.10"}, {Type: corev1.NodeHostName, Address: "node-a"},
	}}}})
	d, err := policy.Evaluate(t.Context(), policy.DefaultConfig(), servingcsr.FromCSR(csr), facts, now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRenderExplain(t *testing.T) {
	now := csrtest.Created.Add(3 * time.Minute)
	good := csrtest.New(t)
	bad := csrtest.New(t, csrtest.Name("csr-hostile"), csrtest.DNSNames("node-a", "kubernetes.default.svc"), csrtest.IPAddresses("10.0.0.10", "10.0.0.99"))
	// Filed 20s ago for an address its Node does not report (yet): held for the settle time.
	held := csrtest.New(t, csrtest.Name("csr-held"), csrtest.IPAddresses("10.0.0.10", "10.0.0.99"))
	held.CreationTimestamp = metav1.NewTime(now.Add(-20 * time.Second))
	denied := csrtest.New(t, csrtest.Name("csr-denied"))
	denied.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
	for _, tc := range []struct {
		name   string
		csr    *certificatesv1.CertificateSigningRequest
		format string
	}{
		{"explain-approve.golden", good, "table"},
		{"explain-deny.golden", bad, "table"},
		{"explain-final.golden", denied, "table"},
		{"explain-deny-json.golden", bad, "json"},
		{"explain-hold.golden", held, "table"},
		{"explain-hold-json.golden", held, "json"},
	} {
		t.Run(strings.TrimSuffix(tc.name, ".golden"), func(t *testing.T) {
			var buf bytes.Buffer
			if err := renderExplain(&buf, tc.csr, decide(t, tc.csr, now), now, tc.format); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.String())
		})
	}
}

// TestRenderExplainFinalHasNoUntil: the controller never decides a final CSR again, so explain
// gives no time for it, even where the policy would hold it today.
func TestRenderExplainFinalHasNoUntil(t *testing.T) {
	now := csrtest.Created.Add(3 * time.Minute)
	csr := csrtest.New(t, csrtest.Name("csr-held-then-denied"), csrtest.IPAddresses("10.0.0.10", "10.0.0.99"))
	csr.CreationTimestamp = metav1.NewTime(now.Add(-20 * time.Second))
	d := decide(t, csr, now)
	if d.Until.IsZero() {
		t.Fatal("the policy gave the held CSR no Until: the test proves nothing")
	}
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
	for _, format := range []string{"json", "table"} {
		var buf bytes.Buffer
		if err := renderExplain(&buf, csr, d, now, format); err != nil {
			t.Fatal(err)
		}
		if out := buf.String(); strings.Contains(out, `"until"`) || strings.Contains(out, "decides again") {
			t.Errorf("explain -o %s of a final CSR says when it is decided again:\n%s", format, out)
		}
	}
}

func TestRenderPlan(t *testing.T) {
	now := csrtest.Created.Add(20 * time.Minute)
	var plan []planRow
	for _, csr := range []*certificatesv1.CertificateSigningRequest{
		csrtest.New(t),
		csrtest.New(t, csrtest.Name("csr-hostile"), csrtest.DNSNames("kubernetes.default.svc")),
		csrtest.New(t, csrtest.Node("node-z"), csrtest.IPAddresses("10.0.0.50")),
	} {
		d := decide(t, csr, now)
		node, _ := servingcsr.NodeName(csr.Spec.Username)
		plan = append(plan, planRow{CSR: csr.Name, Node: node, Created: csr.CreationTimestamp.UTC(), Verdict: d.Verdict.String(), Reason: d.Reason, Message: d.Message})
	}
	for _, format := range []string{"table", "json"} {
		var buf bytes.Buffer
		if err := renderPlan(&buf, plan, now, format); err != nil {
			t.Fatal(err)
		}
		golden(t, "approve-plan-"+format+".golden", buf.String())
	}
}

func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false, "yes please\n": false} {
		got, err := confirm(strings.NewReader(in), &bytes.Buffer{}, "Approve?")
		if err != nil || got != want {
			t.Errorf("confirm(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
