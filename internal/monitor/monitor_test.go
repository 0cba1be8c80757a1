package monitor

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/csrguard/csrguard/internal/metrics"
)

func TestExportReplacesChangedSeries(t *testing.T) {
	m := metrics.New()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	mon := New(nil, m, Config{})
	expiry := time.Unix(1900000000, 0)
	cert := &x509.Certificate{NotAfter: expiry, Issuer: pkix.Name{CommonName: "kubelet-serving-ca"}}

	mon.export([]Result{{Node: "a", State: metrics.ProbeNoServingCertificate}, {Node: "b", State: metrics.ProbeOK, Cert: cert, SANsMatch: true}}, nil)
	mon.export([]Result{{Node: "a", State: metrics.ProbeOK, Cert: cert, SANsMatch: false}}, map[string]*x509.Certificate{"a": cert})

	want := `
# HELP csrguard_kubelet_probe_result 1 for the latest result of the TLS probe of each node's kubelet: ok, no-serving-certificate (the kubelet answers 'tls: internal error'), refused, timeout, untrusted or other.
# TYPE csrguard_kubelet_probe_result gauge
csrguard_kubelet_probe_result{node="a",result="ok"} 1
# HELP csrguard_kubelet_serving_cert_sans_match 1 when the kubelet's serving certificate carries exactly the SANs its Node's addresses call for, else 0.
# TYPE csrguard_kubelet_serving_cert_sans_match gauge
csrguard_kubelet_serving_cert_sans_match{node="a"} 0
# HELP csrguard_kubelet_issued_cert_expiry_timestamp_seconds NotAfter of the newest kubelet-serving certificate issued to each node through a CSR, as a Unix timestamp.
# TYPE csrguard_kubelet_issued_cert_expiry_timestamp_seconds gauge
csrguard_kubelet_issued_cert_expiry_timestamp_seconds{node="a"} 1.9e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "csrguard_kubelet_probe_result", "csrguard_kubelet_serving_cert_sans_match", "csrguard_kubelet_issued_cert_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.ServingCertInfo); n != 1 {
		t.Errorf("serving cert info series = %d, want 1 (node b gone)", n)
	}
}
