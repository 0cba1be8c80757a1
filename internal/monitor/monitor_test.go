package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/metrics"
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
		wantState string
	}{
		{name: "cluster_ca_signs_kubelet_serving", issuedBy: clusterCA, wantState: metrics.ProbeUntrusted},
		{name: "another_ca_signs_kubelet_serving", issuedBy: other, wantState: metrics.ProbeOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrtest.New(t, csrtest.Node("node-a"), csrtest.Name("issued"))
			csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.issuedBy.serving(t, expiry, []string{"node-a"}).Certificate[0]})
			reader := fake.NewClientBuilder().WithObjects(node.DeepCopy(), csr).Build()
			m := New(reader, metrics.New(), Config{Interval: time.Minute, Prober: Prober{Timeout: time.Second}, ClusterCA: pool})
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
