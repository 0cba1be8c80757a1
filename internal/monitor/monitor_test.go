package monitor

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func TestProbeCollector(t *testing.T) {
	// Every certificate here lived 100 days.
	cert := func(issuer string, notAfter int64) *x509.Certificate {
		return &x509.Certificate{NotBefore: time.Unix(notAfter-100*86400, 0), NotAfter: time.Unix(notAfter, 0), Issuer: pkix.Name{CommonName: issuer}}
	}
	const help = `
# HELP csrguard_kubelet_issued_cert_expiry_timestamp_seconds NotAfter of the newest kubelet-serving certificate issued to each node through a CSR, as a Unix timestamp.
# TYPE csrguard_kubelet_issued_cert_expiry_timestamp_seconds gauge
%s# HELP csrguard_kubelet_issued_cert_not_before_timestamp_seconds NotBefore of the newest kubelet-serving certificate issued to each node through a CSR, as a Unix timestamp.
# TYPE csrguard_kubelet_issued_cert_not_before_timestamp_seconds gauge
%s# HELP csrguard_kubelet_probe_result 1 for the latest result of the TLS probe of each node's kubelet: ok, no-serving-certificate (the kubelet answers 'tls: internal error'), refused, timeout, untrusted, self-signed (serving certificate rotation off) or other.
# TYPE csrguard_kubelet_probe_result gauge
%s# HELP csrguard_kubelet_serving_cert_expiry_timestamp_seconds NotAfter of the serving certificate each kubelet presented to the last probe, as a Unix timestamp.
# TYPE csrguard_kubelet_serving_cert_expiry_timestamp_seconds gauge
%s# HELP csrguard_kubelet_serving_cert_info Always 1; the issuer label names who signed the serving certificate each kubelet presented.
# TYPE csrguard_kubelet_serving_cert_info gauge
%s# HELP csrguard_kubelet_serving_cert_not_before_timestamp_seconds NotBefore of the serving certificate each kubelet presented to the last probe, as a Unix timestamp.
# TYPE csrguard_kubelet_serving_cert_not_before_timestamp_seconds gauge
%s# HELP csrguard_kubelet_serving_cert_sans_match 1 when the kubelet's serving certificate carries exactly the SANs its Node's addresses call for, else 0.
# TYPE csrguard_kubelet_serving_cert_sans_match gauge
%s`
	c := NewProbeCollector()
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("before the first sweep: %d series, want 0", n)
	}

	// Sweep 1: a has no certificate, b and c serve one, b's was issued
	// through a CSR.
	c.Set([]Result{
		{Node: "a", State: metrics.ProbeNoServingCertificate},
		{Node: "b", State: metrics.ProbeOK, Cert: cert("kubernetes", 1900000000), SANsMatch: true},
		{Node: "c", State: metrics.ProbeOK, Cert: cert("old-ca", 1800000000), SANsMatch: false},
		// d serves its own certificate: no SAN series.
		{Node: "d", State: metrics.ProbeSelfSigned, Cert: cert("d@1700000000", 1800000000), SANsMatch: false},
	}, map[string]*x509.Certificate{"b": cert("kubernetes", 1900000000)})
	want := strings.NewReader(fmt.Sprintf(help,
		`csrguard_kubelet_issued_cert_expiry_timestamp_seconds{node="b"} 1.9e+09
`,
		`csrguard_kubelet_issued_cert_not_before_timestamp_seconds{node="b"} 1.89136e+09
`,
		`csrguard_kubelet_probe_result{node="a",result="no-serving-certificate"} 1
csrguard_kubelet_probe_result{node="b",result="ok"} 1
csrguard_kubelet_probe_result{node="c",result="ok"} 1
csrguard_kubelet_probe_result{node="d",result="self-signed"} 1
`,
		`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{node="b"} 1.9e+09
csrguard_kubelet_serving_cert_expiry_timestamp_seconds{node="c"} 1.8e+09
csrguard_kubelet_serving_cert_expiry_timestamp_seconds{node="d"} 1.8e+09
`,
		`csrguard_kubelet_serving_cert_info{issuer="d@1700000000",node="d"} 1
csrguard_kubelet_serving_cert_info{issuer="kubernetes",node="b"} 1
csrguard_kubelet_serving_cert_info{issuer="old-ca",node="c"} 1
`,
		`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{node="b"} 1.89136e+09
csrguard_kubelet_serving_cert_not_before_timestamp_seconds{node="c"} 1.79136e+09
csrguard_kubelet_serving_cert_not_before_timestamp_seconds{node="d"} 1.79136e+09
`,
		`csrguard_kubelet_serving_cert_sans_match{node="b"} 1
csrguard_kubelet_serving_cert_sans_match{node="c"} 0
`))
	if err := testutil.CollectAndCompare(c, want); err != nil {
		t.Errorf("after sweep 1: %v", err)
	}

	// Sweep 2: a got its certificate, b is gone (its Node was deleted), c
	// refuses connections; a CSR issued to a node not swept is not exported.
	c.Set([]Result{
		{Node: "a", State: metrics.ProbeOK, Cert: cert("kubernetes", 1950000000), SANsMatch: true},
		{Node: "c", State: metrics.ProbeRefused},
	}, map[string]*x509.Certificate{"a": cert("kubernetes", 1950000000), "b": cert("kubernetes", 1900000000)})
	want = strings.NewReader(fmt.Sprintf(help,
		`csrguard_kubelet_issued_cert_expiry_timestamp_seconds{node="a"} 1.95e+09
`,
		`csrguard_kubelet_issued_cert_not_before_timestamp_seconds{node="a"} 1.94136e+09
`,
		`csrguard_kubelet_probe_result{node="a",result="ok"} 1
csrguard_kubelet_probe_result{node="c",result="refused"} 1
`,
		`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{node="a"} 1.95e+09
`,
		`csrguard_kubelet_serving_cert_info{issuer="kubernetes",node="a"} 1
`,
		`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{node="a"} 1.94136e+09
`,
		`csrguard_kubelet_serving_cert_sans_match{node="a"} 1
`))
	if err := testutil.CollectAndCompare(c, want); err != nil {
		t.Errorf("after sweep 2: %v", err)
	}
}

// TestSweepClusterCA: without --kubelet-ca-file, a sweep verifies kubelet
// certificates against the cluster CA where the issued certificates show it
// signs kubelet-serving ones, and not where another CA does.
func TestSweepClusterCA(t *testing.T) {
	clusterCA, other := newCA(t), newCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(clusterCA.cert)
	expiry := time.Now().Add(time.Hour)
	// The kubelet serves a certificate from another CA.
	node := kubelet(t, func() (*tls.Certificate, error) {
		return other.serving(t, expiry, []string{"node-a"}, "127.0.0.1"), nil
	})
	for _, tc := range []struct {
		name      string
		issuedBy  *ca
		der       bool // as the controller's cache keeps the certificate
		wantState string
	}{
		{name: "cluster_ca_signs_kubelet_serving", issuedBy: clusterCA, wantState: metrics.ProbeUntrusted},
		{name: "cluster_ca_signs_kubelet_serving_der", issuedBy: clusterCA, der: true, wantState: metrics.ProbeUntrusted},
		{name: "another_ca_signs_kubelet_serving", issuedBy: other, wantState: metrics.ProbeOK},
		{name: "another_ca_signs_kubelet_serving_der", issuedBy: other, der: true, wantState: metrics.ProbeOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrtest.New(t, csrtest.Node("node-a"), csrtest.Name("issued"))
			csr.Status.Certificate = tc.issuedBy.serving(t, expiry, []string{"node-a"}).Certificate[0]
			if !tc.der {
				csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: csr.Status.Certificate})
			}
			reader := fake.NewClientBuilder().WithObjects(csr).Build()
			m := New(reader, nodes.Of(nil, node.DeepCopy()), metrics.New(), Config{Interval: time.Minute, Prober: Prober{Timeout: time.Second}, ClusterCA: pool})
			results, err := m.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != 1 || results[0].State != tc.wantState {
				t.Errorf("results %+v, want one with state %s", results, tc.wantState)
			}
		})
	}
}

// TestIssued: the newest issued certificate of each node, read from PEM as the API server
// holds it or from DER as the controller's cache keeps it (approval.CacheOptions).
func TestIssued(t *testing.T) {
	ca := newCA(t)
	soon, later := time.Now().Add(time.Hour).Truncate(time.Second), time.Now().Add(2*time.Hour).Truncate(time.Second)
	der := func(notAfter time.Time) []byte { return ca.serving(t, notAfter, []string{"node-a"}).Certificate[0] }
	pemOf := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
	issued := func(name string, cert []byte, opts ...csrtest.Option) certificatesv1.CertificateSigningRequest {
		csr := csrtest.New(t, append([]csrtest.Option{csrtest.Name(name)}, opts...)...)
		csr.Status.Certificate = cert
		return *csr
	}
	tests := []struct {
		name string
		csrs []certificatesv1.CertificateSigningRequest
		want map[string]time.Time // NotAfter by node
	}{
		{"pem", []certificatesv1.CertificateSigningRequest{issued("a", pemOf(der(soon)))}, map[string]time.Time{"node-a": soon}},
		{"der", []certificatesv1.CertificateSigningRequest{issued("a", der(soon))}, map[string]time.Time{"node-a": soon}},
		{"pem_chain_first_block", []certificatesv1.CertificateSigningRequest{
			issued("a", append(pemOf(der(soon)), pemOf(ca.cert.Raw)...)),
		}, map[string]time.Time{"node-a": soon}},
		{"latest_not_after", []certificatesv1.CertificateSigningRequest{
			issued("a", der(later)), issued("b", pemOf(der(soon))),
		}, map[string]time.Time{"node-a": later}},
		// The requester chose the top of its RSA modulus: a PEM block of another certificate
		// (approval.TestIssuedCertificateHidingPEM). The issued certificate is read, not that.
		{"der_holding_pem", []certificatesv1.CertificateSigningRequest{issued("a", holdingPEM(t, ca, soon, pemOf(der(later))))}, map[string]time.Time{"node-a": soon}},
		{"garbage", []certificatesv1.CertificateSigningRequest{issued("a", []byte("not a certificate"))}, map[string]time.Time{}},
		{"not_issued", []certificatesv1.CertificateSigningRequest{issued("a", nil)}, map[string]time.Time{}},
		{"not_a_node", []certificatesv1.CertificateSigningRequest{
			issued("a", der(soon), csrtest.Username("system:serviceaccount:default:node-a")),
		}, map[string]time.Time{}},
		{"other_signer", []certificatesv1.CertificateSigningRequest{
			issued("a", der(soon), csrtest.SignerName("example.com/serving")),
		}, map[string]time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]time.Time{}
			for node, c := range Issued(tc.csrs) {
				got[node] = c.NotAfter
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("Issued() NotAfter mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// holdingPEM returns a certificate ca issues, valid until notAfter, for an RSA key whose
// modulus begins with payload: bytes a requester may choose, as it chooses its key.
func holdingPEM(t *testing.T, ca *ca, notAfter time.Time, payload []byte) []byte {
	t.Helper()
	n := make([]byte, 1024) // RSA-8192, the largest key the policy allows
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	n[0], n[1023] = 0xff, n[1023]|1
	if len(payload) > 1000 {
		t.Fatal("holdingPEM: payload too long")
	}
	copy(n[1:], append([]byte{'\n'}, payload...))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "system:node:node-a"},
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(der); block == nil {
		t.Fatal("holdingPEM: no PEM block in the certificate")
	}
	return der
}

// TestStartWaitsForNodes: a monitor started before the Nodes are listed sweeps nothing, rather
// than fail its first sweep and show no probe results for an interval; once they are, it sweeps.
func TestStartWaitsForNodes(t *testing.T) {
	kept := nodes.NewStore(nil, nil)
	m := metrics.New()
	mon := New(fake.NewClientBuilder().Build(), kept, m, Config{Interval: time.Hour, Prober: Prober{Timeout: time.Second}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- mon.Start(ctx) }()
	time.Sleep(50 * time.Millisecond) // not an outcome: only a chance to sweep too early
	if got := testutil.ToFloat64(m.ProbeSweepTimestamp); got != 0 {
		t.Fatalf("swept at %v before the Nodes were listed", got)
	}
	if err := kept.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, wait.ForeverTestTimeout, true, func(context.Context) (bool, error) {
		return testutil.ToFloat64(m.ProbeSweepTimestamp) > 0, nil
	}); err != nil {
		t.Fatalf("no sweep once the Nodes were listed: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start() = %v", err)
	}
}
