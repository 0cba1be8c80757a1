package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
		name string
		csr  *certificatesv1.CertificateSigningRequest
		args []string
	}{
		{"explain-approve.golden", good, nil},
		{"explain-deny.golden", bad, nil},
		{"explain-deny-wide.golden", bad, []string{"-o", "wide"}},
		{"explain-deny-no-headers.golden", bad, []string{"--no-headers"}},
		{"explain-deny-name.golden", bad, []string{"-o", "name"}},
		{"explain-deny-jsonpath.golden", bad, []string{"-o", `jsonpath={.verdict} {.reason}{"\n"}{range .checks[?(@.result=="fail")]}{.check}{"\n"}{end}`}},
		{"explain-final.golden", denied, nil},
		{"explain-deny-json.golden", bad, []string{"-o", "json"}},
		{"explain-hold.golden", held, nil},
		{"explain-hold-json.golden", held, []string{"-o", "json"}},
	} {
		t.Run(strings.TrimSuffix(tc.name, ".golden"), func(t *testing.T) {
			golden(t, tc.name, printed(t, newExplanation(tc.csr, decide(t, tc.csr, now), now), tc.args...))
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
		if out := printed(t, newExplanation(csr, d, now), "-o", format); strings.Contains(out, `"until"`) || strings.Contains(out, "decides again") {
			t.Errorf("explain -o %s of a final CSR says when it is decided again:\n%s", format, out)
		}
	}
}

func TestRenderPlan(t *testing.T) {
	now := csrtest.Created.Add(20 * time.Minute)
	var plan approvalPlan
	for _, csr := range []*certificatesv1.CertificateSigningRequest{
		csrtest.New(t),
		csrtest.New(t, csrtest.Name("csr-hostile"), csrtest.DNSNames("kubernetes.default.svc")),
		csrtest.New(t, csrtest.Node("node-z"), csrtest.IPAddresses("10.0.0.50")),
	} {
		d := decide(t, csr, now)
		node, _ := servingcsr.NodeName(csr.Spec.Username)
		plan = append(plan, planRow{CSR: csr.Name, Node: node, Created: csr.CreationTimestamp.UTC(), Verdict: d.Verdict.String(), Reason: d.Reason, Message: d.Message,
			age: now.Sub(csr.CreationTimestamp.Time)})
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"table", nil},
		{"wide", []string{"-o", "wide"}},
		{"no-headers", []string{"--no-headers"}},
		{"json", []string{"-o", "json"}},
		{"name", []string{"-o", "name"}},
		{"jsonpath", []string{"-o", `jsonpath={range [?(@.verdict=="Approve")]}{.csr}{"\n"}{end}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, "approve-plan-"+tc.name+".golden", printed(t, plan, tc.args...))
		})
	}
	if got := printed(t, approvalPlan{}, "-o", "json"); got != "[]\n" {
		t.Errorf("an empty plan prints %q in JSON, want []", got)
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

func TestPlanApprovalsNamed(t *testing.T) {
	now := csrtest.Created.Add(20 * time.Minute)
	final := csrtest.New(t, csrtest.Name("csr-final"))
	final.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
	view := &clusterView{
		facts: policy.NewSnapshotFacts(policy.Snapshot{Nodes: []policy.Node{{Name: "node-a", Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.0.0.10"}, {Type: corev1.NodeHostName, Address: "node-a"},
		}}}}),
		csrs: []certificatesv1.CertificateSigningRequest{*csrtest.New(t), *csrtest.New(t, csrtest.Name("csr-other")), *final},
	}
	cmd := New()
	cmd.SetContext(t.Context())
	tests := []struct {
		names   []string
		want    []string
		wantErr string
	}{
		{nil, []string{"csr-node-a", "csr-other"}, ""},
		{[]string{"csr-other"}, []string{"csr-other"}, ""},
		{[]string{"csr-other", "csr-missing"}, nil, `CSR "csr-missing" is not a pending kubelet-serving CSR`},
		{[]string{"csr-final"}, nil, `CSR "csr-final" is not a pending kubelet-serving CSR`},
	}
	for _, tc := range tests {
		plan, err := planApprovals(cmd, view, policy.DefaultConfig(), now, tc.names)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("planApprovals(%q) error = %v, want %q", tc.names, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range plan {
			got = append(got, p.CSR)
		}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("planApprovals(%q) plans (-got +want):\n%s", tc.names, diff)
		}
	}
}

func TestPlanApprovalsSuperseded(t *testing.T) {
	// node-a's kubelet gave up on two CSRs and waits for the third; a hostile
	// older CSR is shown as the policy denies it, not as superseded.
	now := csrtest.Created.Add(20 * time.Minute)
	at := func(name string, minutes int, opts ...csrtest.Option) certificatesv1.CertificateSigningRequest {
		return *csrtest.New(t, append([]csrtest.Option{csrtest.Name(name), csrtest.CreatedAt(csrtest.Created.Add(time.Duration(minutes) * time.Minute))}, opts...)...)
	}
	view := &clusterView{
		facts: policy.NewSnapshotFacts(policy.Snapshot{Nodes: []policy.Node{{Name: "node-a", Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.0.0.10"}, {Type: corev1.NodeHostName, Address: "node-a"},
		}}, {Name: "node-b", Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.0.0.11"}, {Type: corev1.NodeHostName, Address: "node-b"},
		}}}}),
		csrs: []certificatesv1.CertificateSigningRequest{
			at("csr-a-1", 0), at("csr-a-2", 15), at("csr-a-3", 30),
			at("csr-a-hostile", 1, csrtest.DNSNames("node-a", "kubernetes.default.svc")),
			// node-b's kubelet waits for csr-b-1; a newer hostile CSR must not hide it.
			at("csr-b-1", 30, csrtest.Node("node-b"), csrtest.Name("csr-b-1"), csrtest.IPAddresses("10.0.0.11")),
			at("csr-b-2", 31, csrtest.Node("node-b"), csrtest.Name("csr-b-2"), csrtest.DNSNames("node-b", "kubernetes.default.svc"), csrtest.IPAddresses("10.0.0.11")),
		},
	}
	cmd := New()
	cmd.SetContext(t.Context())
	plan, err := planApprovals(cmd, view, policy.DefaultConfig(), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range plan {
		got[p.CSR] = p.Verdict + "/" + string(p.Reason)
	}
	want := map[string]string{
		"csr-a-1": "Superseded/Superseded", "csr-a-2": "Superseded/Superseded", "csr-a-3": "Approve/AllChecksPassed",
		"csr-a-hostile": "Deny/ReservedName",
		"csr-b-1":       "Approve/AllChecksPassed", "csr-b-2": "Deny/ReservedName",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("planApprovals verdicts (-got +want):\n%s", diff)
	}
}
