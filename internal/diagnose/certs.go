package diagnose

import (
	"crypto/x509"
	"time"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
)

// The states of a CertRow.
const (
	StateOK                   = "ok"
	StateExpiring             = "expiring"
	StateExpired              = "expired"
	StateNoServingCertificate = "no-serving-certificate"
	StateRefused              = "refused"
	StateTimeout              = "timeout"
	StateUntrusted            = "untrusted"
	StateSANMismatch          = "san-mismatch"
	StateUnknown              = "unknown"
)

// The sources of a CertRow's certificate.
const (
	SourceProbe = "probe"
	SourceCSR   = "csr"
	SourceNone  = "-"
)

// CertRow is one node's serving certificate as best known.
type CertRow struct {
	Node string
	// Expires is the certificate's NotAfter; zero when no certificate is known.
	Expires time.Time
	// Residual is Expires minus the snapshot's time: negative once expired,
	// zero when no certificate is known.
	Residual time.Duration
	// Issuer is the issuer's common name (or whole name).
	Issuer string
	// Source says where the certificate was seen: SourceProbe (served by the
	// kubelet), SourceCSR (the newest issued kubelet-serving CSR) or SourceNone.
	Source string
	// State is the probe's failure when the kubelet could not be reached
	// (refused, timeout, unknown) or served no certificate
	// (no-serving-certificate); otherwise the certificate's state, worst
	// first: expired, expiring (should have been rotated: under 7 days and
	// under a tenth of its lifetime left), untrusted, san-mismatch, ok. It is
	// unknown when nothing is known.
	State string
	// SANsMatch reports whether the certificate's SANs are exactly those its
	// Node's addresses call for; nil when no certificate is known.
	SANsMatch *bool
}

// Certs returns one row per node, sorted by node: the certificate the probe
// saw, else the newest issued one from the CSRs.
func Certs(s Snapshot) []CertRow {
	v := newView(s)
	rows := make([]CertRow, 0, len(v.nodeNames))
	for _, n := range v.nodeNames {
		row := CertRow{Node: n, Source: SourceNone, State: StateUnknown}
		r, probed := v.probe(n)
		switch {
		case probed && probeReached(r):
			row.Source = SourceProbe
			if r.State == metrics.ProbeNoServingCertificate || r.Cert == nil {
				row.State = StateNoServingCertificate
				break
			}
			row.fill(r.Cert, s.Now, r.SANsMatch)
			row.State = certState(r.Cert, s.Now, r.State == metrics.ProbeUntrusted, r.SANsMatch)
		case v.issued[n] != nil:
			c := v.issued[n]
			match, _, _ := monitor.CompareSANs(c, v.nodes[n].Status.Addresses)
			row.Source = SourceCSR
			row.fill(c, s.Now, match)
			row.State = certState(c, s.Now, false, match)
			if probed {
				// The API knows a certificate, but the kubelet could not
				// be asked which one it serves: say so.
				row.State = probeFailure(r.State)
			}
		case probed:
			row.State = probeFailure(r.State)
		}
		rows = append(rows, row)
	}
	return rows
}

func (row *CertRow) fill(c *x509.Certificate, now time.Time, sansMatch bool) {
	row.Expires = c.NotAfter
	row.Residual = c.NotAfter.Sub(now)
	row.Issuer = issuerName(c)
	row.SANsMatch = &sansMatch
}

func certState(c *x509.Certificate, now time.Time, untrusted, sansMatch bool) string {
	switch {
	case !c.NotAfter.After(now):
		return StateExpired
	case expiring(c, now):
		return StateExpiring
	case untrusted:
		return StateUntrusted
	case !sansMatch:
		return StateSANMismatch
	}
	return StateOK
}

func probeFailure(state string) string {
	switch state {
	case metrics.ProbeTimeout:
		return StateTimeout
	case metrics.ProbeRefused:
		return StateRefused
	}
	return StateUnknown
}
