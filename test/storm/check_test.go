package storm

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// csr is a CSR named name with conditions of the given types (a Denied one
// with reason SANNotOnNode) and, if issued, a certificate.
func csr(name string, issued bool, types ...certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequest {
	c := certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, t := range types {
		cond := certificatesv1.CertificateSigningRequestCondition{Type: t, Status: corev1.ConditionTrue}
		if t == certificatesv1.CertificateDenied {
			cond.Reason = "SANNotOnNode"
		}
		c.Status.Conditions = append(c.Status.Conditions, cond)
	}
	if issued {
		c.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----")
	}
	return c
}

const (
	approved = certificatesv1.CertificateApproved
	denied   = certificatesv1.CertificateDenied
	failed   = certificatesv1.CertificateFailed
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		want map[string]Kind
		csrs []certificatesv1.CertificateSigningRequest
		got  Verdict
	}{
		{
			name: "all_as_they_must_end",
			want: map[string]Kind{"a": Legitimate, "b": Legitimate, "h": Hostile, "other": Legitimate},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", true, approved), csr("b", true, approved), csr("h", false, denied), csr("other", true, approved), csr("not-ours", false)},
			got:  Verdict{Legitimate: 3, Hostile: 1, Approved: 3, Issued: 3, Denied: 1},
		},
		{
			name: "legitimate_pending",
			want: map[string]Kind{"a": Legitimate},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", false)},
			got:  Verdict{Legitimate: 1, Violations: []string{"legitimate CSR a: not approved (still pending)"}},
		},
		{
			name: "legitimate_approved_not_issued",
			want: map[string]Kind{"a": Legitimate},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", false, approved)},
			got:  Verdict{Legitimate: 1, Approved: 1, Violations: []string{"legitimate CSR a: approved but not issued"}},
		},
		{
			name: "legitimate_denied",
			want: map[string]Kind{"a": Legitimate},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", false, denied)},
			got:  Verdict{Legitimate: 1, Violations: []string{"legitimate CSR a: denied (SANNotOnNode)"}},
		},
		{
			name: "legitimate_failed",
			want: map[string]Kind{"a": Legitimate},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", false, approved, failed)},
			got:  Verdict{Legitimate: 1, Approved: 1, Violations: []string{"legitimate CSR a: failed (the signer could not sign)"}},
		},
		{
			name: "hostile_approved",
			want: map[string]Kind{"h": Hostile},
			csrs: []certificatesv1.CertificateSigningRequest{csr("h", true, approved)},
			got:  Verdict{Hostile: 1, HostileApproved: 1, Violations: []string{"hostile CSR h: approved"}},
		},
		{
			name: "hostile_pending",
			want: map[string]Kind{"h": Hostile},
			csrs: []certificatesv1.CertificateSigningRequest{csr("h", false)},
			got:  Verdict{Hostile: 1, Violations: []string{"hostile CSR h: not denied (still pending)"}},
		},
		{
			name: "approved_and_denied",
			want: map[string]Kind{"a": Legitimate, "h": Hostile},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", true, approved, denied), csr("h", false, denied, approved)},
			got: Verdict{Legitimate: 1, Hostile: 1, Conflicting: 2, Violations: []string{
				"hostile CSR h: both Approved and Denied (SANNotOnNode)",
				"legitimate CSR a: both Approved and Denied (SANNotOnNode)",
			}},
		},
		{
			name: "decided_twice",
			want: map[string]Kind{"a": Legitimate, "h": Hostile},
			csrs: []certificatesv1.CertificateSigningRequest{csr("a", true, approved, approved), csr("h", false, denied, denied)},
			got: Verdict{Legitimate: 1, Hostile: 1, Conflicting: 2, Violations: []string{
				"hostile CSR h: 2 Denied conditions",
				"legitimate CSR a: 2 Approved conditions",
			}},
		},
		{
			name: "missing",
			want: map[string]Kind{"a": Legitimate, "h": Hostile},
			got: Verdict{Legitimate: 1, Hostile: 1, Missing: 2, Violations: []string{
				"hostile CSR h: not found",
				"legitimate CSR a: not found",
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(tc.want, tc.csrs)
			if diff := cmp.Diff(got, tc.got); diff != "" {
				t.Errorf("Check (-got +want):\n%s", diff)
			}
			if (got.Err() == nil) != (len(tc.got.Violations) == 0) {
				t.Errorf("Err() = %v with %d violations", got.Err(), len(tc.got.Violations))
			}
		})
	}
}

func TestVerdictErrShowsTwentyViolations(t *testing.T) {
	var v Verdict
	for i := range 25 {
		v.Violations = append(v.Violations, "violation "+string(rune('a'+i)))
	}
	got := v.Err().Error()
	if !strings.HasPrefix(got, "25 invariant violations:\n  violation a\n") || !strings.HasSuffix(got, "violation t\n  … and 5 more") {
		t.Errorf("Err() = %q", got)
	}
}

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Fault
		err  string
	}{
		{in: "all", want: Faults},
		{in: "leader-kill", want: []Fault{LeaderKill}},
		{in: "watch-expiry, apiserver-restart,watch-expiry", want: []Fault{WatchExpiry, APIServerRestart}},
		{in: "network-partition", err: `unknown fault "network-partition": want all or a list of apiserver-restart, etcd-restart, leader-kill, leader-pause, watch-expiry`},
		{in: "", err: `unknown fault ""`},
	} {
		got, err := ParseFaults(tc.in)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("ParseFaults(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFaults(%q): %v", tc.in, err)
		}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("ParseFaults(%q) (-got +want):\n%s", tc.in, diff)
		}
	}
}

func TestParseSamples(t *testing.T) {
	text := `# HELP apiserver_request_total Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",group="certificates.k8s.io",resource="certificatesigningrequests",scope="cluster",subresource="",verb="LIST",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",group="",resource="nodes",scope="cluster",subresource="",verb="LIST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",group="",resource="nodes",scope="cluster",subresource="",verb="WATCH",version="v1"} 9
csrguard_errors_total{stage="write"} 4
csrguard_errors_total{stage="facts"} 2
leader_election_master_status{name="csrguard"} 1
odd_metric{help="a \"quoted\", value"} 5
`
	samples, err := parseSamples(strings.NewReader(text), "apiserver_request_total", writeErrorsMetric, leaderMetric, "odd_metric")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"apiserver_request_total", map[string]string{"verb": "LIST", "resource": "certificatesigningrequests"}, 7},
		{"apiserver_request_total", map[string]string{"verb": "LIST"}, 10},
		{writeErrorsMetric, map[string]string{"stage": "write"}, 4},
		{leaderMetric, nil, 1},
		{"odd_metric", map[string]string{"help": `a "quoted", value`}, 5},
	} {
		if got := sum(samples, tc.name, tc.labels); got != tc.want {
			t.Errorf("sum(%s%v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
