package diagnose

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
)

func TestCerts(t *testing.T) {
	const node, ip = "node-a", "10.0.0.1"
	year := yearCert(t, node, ip)
	older := newLeaf(t, leafSpec{node: node, ip: ip, notBefore: now.Add(-100 * 24 * time.Hour), notAfter: now.Add(265 * 24 * time.Hour)})
	expiringSoon := newLeaf(t, leafSpec{node: node, ip: ip, notBefore: now.Add(-360 * 24 * time.Hour), notAfter: now.Add(5 * 24 * time.Hour)})
	expired := newLeaf(t, leafSpec{node: node, ip: ip, notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(-14 * time.Minute)})
	foreign := newLeaf(t, leafSpec{node: node, ip: ip, notBefore: now.Add(-time.Hour), notAfter: now.Add(364 * 24 * time.Hour), extraDNS: []string{"kubernetes.default.svc"}})
	yes, no := true, false

	row := func(c *x509.Certificate, source, state string, match *bool) CertRow {
		r := CertRow{Node: node, Source: source, State: state, SANsMatch: match}
		if c != nil {
			r.Expires, r.Residual, r.Issuer = c.NotAfter, c.NotAfter.Sub(now), "kubelet-serving-ca"
		}
		return r
	}
	untrusted := probeOK(node, ip, year)
	untrusted.State, untrusted.Err = metrics.ProbeUntrusted, x509.UnknownAuthorityError{}
	mismatch := probeOK(node, ip, year)
	mismatch.SANsMatch, mismatch.Missing = false, []string{"10.0.0.9"}
	expiringUntrusted := probeOK(node, ip, expiringSoon)
	expiringUntrusted.State = metrics.ProbeUntrusted

	tests := []struct {
		name   string
		probe  *monitor.Result // nil: not probed
		issued *x509.Certificate
		want   CertRow
	}{
		{"probe_ok_preferred_over_csr", ptrTo(probeOK(node, ip, year)), older, row(year, SourceProbe, StateOK, &yes)},
		{"probe_no_serving_certificate", ptrTo(probeNoCert(node, ip)), older, row(nil, SourceProbe, StateNoServingCertificate, nil)},
		{"probe_timeout_falls_back_to_csr", ptrTo(probeFailed(node, ip, metrics.ProbeTimeout, "i/o timeout")), older, row(older, SourceCSR, StateTimeout, &yes)},
		{"probe_refused_nothing_issued", ptrTo(probeFailed(node, ip, metrics.ProbeRefused, "connection refused")), nil, row(nil, SourceNone, StateRefused, nil)},
		{"probe_other_nothing_issued", ptrTo(probeFailed(node, ip, metrics.ProbeOther, "no route")), nil, row(nil, SourceNone, StateUnknown, nil)},
		{"probe_untrusted", &untrusted, nil, row(year, SourceProbe, StateUntrusted, &yes)},
		{"probe_san_mismatch", &mismatch, nil, row(year, SourceProbe, StateSANMismatch, &no)},
		{"expiring_before_untrusted", &expiringUntrusted, nil, row(expiringSoon, SourceProbe, StateExpiring, &yes)},
		{"probe_expired", ptrTo(probeOK(node, ip, expired)), nil, row(expired, SourceProbe, StateExpired, &yes)},
		{"not_probed_issued_ok", nil, year, row(year, SourceCSR, StateOK, &yes)},
		{"not_probed_issued_expiring", nil, expiringSoon, row(expiringSoon, SourceCSR, StateExpiring, &yes)},
		{"not_probed_issued_expired", nil, expired, row(expired, SourceCSR, StateExpired, &yes)},
		{"not_probed_issued_foreign_san", nil, foreign, row(foreign, SourceCSR, StateSANMismatch, &no)},
		{"not_probed_nothing_issued", nil, nil, row(nil, SourceNone, StateUnknown, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Snapshot{Now: now, Nodes: []corev1.Node{newNode(node, ip, ubuntuOS, false)}, Decisions: map[string]policy.Decision{}}
			if tt.probe != nil {
				s.Probes = map[string]monitor.Result{node: *tt.probe}
			}
			if tt.issued != nil {
				s.CSRs = []certificatesv1.CertificateSigningRequest{issuedCSR(t, "csr-1", node, ip, 30*time.Minute, tt.issued)}
			}
			if diff := cmp.Diff(Certs(s), []CertRow{tt.want}); diff != "" {
				t.Errorf("Certs() (-got +want):\n%s", diff)
			}
		})
	}
}

// TestCertsNewestIssued checks that the fallback takes the issued
// certificate with the latest NotAfter, and that every node gets a row.
func TestCertsNewestIssued(t *testing.T) {
	s := healthy(t, ubuntuOS)
	s.Probes = nil
	newer := newLeaf(t, leafSpec{node: "node-b", ip: "10.0.0.2", notBefore: now.Add(-time.Minute), notAfter: now.Add(365 * 24 * time.Hour)})
	s.CSRs = append(s.CSRs, issuedCSR(t, "csr-node-b-2", "node-b", "10.0.0.2", time.Minute, newer))
	s.Nodes = append(s.Nodes, newNode("node-d", "10.0.0.4", ubuntuOS, false))
	rows := Certs(s)
	var got []string
	for _, r := range rows {
		got = append(got, r.Node+" "+r.Source+" "+r.State+" "+human.Duration(r.Residual))
	}
	want := []string{"node-a csr ok 335d", "node-b csr ok 365d", "node-c csr ok 335d", "node-d - unknown 0s"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Certs() (-got +want):\n%s", diff)
	}
}

func ptrTo[T any](v T) *T { return &v }
