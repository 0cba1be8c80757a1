// Package monitor watches kubelet serving certificates: it probes each Node's
// kubelet endpoint with a TLS handshake and records the certificate it
// serves (expiry, issuer, whether it chains to a configured CA, whether its
// SANs match the Node's addresses) or the class of failure — above all
// no-serving-certificate, the "remote error: tls: internal error" of the
// incident, which the kubelet's own TTL metric reports as +Inf. It also
// reads issued certificates and the pending backlog from the CSR cache.
//
// The probe functions are used by the controller (Monitor, ProbeCollector,
// CSRCollector) and by CLI commands (doctor, certs) alike. Package monitor
// decides nothing about CSRs.
package monitor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// Result is what one probe of a kubelet found.
type Result struct {
	Node     string
	Endpoint string
	// State is one of the metrics.Probe* values.
	State string
	// Err is the handshake or verification error, if any.
	Err error
	// Cert is the serving certificate presented, if any (also when untrusted).
	Cert *x509.Certificate
	// SANsMatch reports whether Cert carries exactly the SANs the Node's
	// addresses call for; Missing and Extra list the differences.
	SANsMatch      bool
	Missing, Extra []string
	Duration       time.Duration
}

// Prober probes kubelet endpoints with a TLS handshake.
type Prober struct {
	// Timeout bounds one probe; default 5s.
	Timeout time.Duration
	// Roots, when set, is the kubelet-serving CA bundle presented
	// certificates must chain to; otherwise any certificate is accepted.
	Roots *x509.CertPool
}

// Endpoint returns the address csrguard probes for node: its InternalIP,
// else its ExternalIP, at status.daemonEndpoints.kubeletEndpoint.Port (10250
// when unset), as the API server reaches kubelets.
func Endpoint(node *corev1.Node) (string, bool) {
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range node.Status.Addresses {
			if a.Type == typ {
				if ip, err := netip.ParseAddr(a.Address); err == nil {
					return net.JoinHostPort(ip.String(), strconv.Itoa(port)), true
				}
			}
		}
	}
	return "", false
}

// Probe performs one TLS handshake with node's kubelet.
func (p Prober) Probe(ctx context.Context, node *corev1.Node) Result {
	r := Result{Node: node.Name}
	endpoint, ok := Endpoint(node)
	if !ok {
		r.State, r.Err = metrics.ProbeOther, errors.New("node has no InternalIP or ExternalIP")
		return r
	}
	r.Endpoint = endpoint
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	d := tls.Dialer{Config: &tls.Config{
		// Verified below against Roots, without a host name: the kubelet is
		// reached by IP and its SANs are compared with the Node separately.
		InsecureSkipVerify: true, //nolint:gosec // see above
		MinVersion:         tls.VersionTLS12,
	}}
	conn, err := d.DialContext(ctx, "tcp", endpoint)
	r.Duration = time.Since(start)
	if err != nil {
		r.State, r.Err = Classify(err), err
		return r
	}
	state := conn.(*tls.Conn).ConnectionState()
	_ = conn.Close()
	r.Cert = state.PeerCertificates[0]
	r.SANsMatch, r.Missing, r.Extra = CompareSANs(r.Cert, node.Status.Addresses)
	r.State = metrics.ProbeOK
	var verifyErr error
	if p.Roots != nil {
		inter := x509.NewCertPool()
		for _, c := range state.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, verifyErr = r.Cert.Verify(x509.VerifyOptions{Roots: p.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	}
	switch {
	case p.Roots != nil && verifyErr == nil:
		// Chains to the kubelet-serving CA, whatever else it presents.
	case SelfSigned(state.PeerCertificates):
		// The kubelet's own certificate (rotation off): its SANs are the
		// kubelet's host name, so reporting a SAN mismatch would send the
		// reader after addresses instead of the rotation setting.
		r.State, r.Err = metrics.ProbeSelfSigned, verifyErr
	case verifyErr != nil:
		r.State, r.Err = metrics.ProbeUntrusted, verifyErr
	}
	return r
}

// SelfSigned reports whether a served chain is one the server signed itself:
// its leaf is self-signed, or signed by a self-signed CA the server presents
// along with it. That is what a kubelet serves when serving certificate
// rotation is off ("<host>@<time>" issued by "<host>-ca@<time>"); a server
// with a real certificate does not send its root.
func SelfSigned(chain []*x509.Certificate) bool {
	if len(chain) == 0 {
		return false
	}
	for _, c := range chain {
		if selfSigned(c) && (c == chain[0] || chain[0].CheckSignatureFrom(c) == nil) {
			return true
		}
	}
	return false
}

// selfSigned reports whether c is signed by its own key (CheckSignatureFrom
// would refuse a leaf that is not a CA).
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// alertInternalError is TLS alert 80, what a kubelet without a serving
// certificate answers every handshake with.
const alertInternalError = tls.AlertError(80)

// Classify names the failure class of a probe error.
func Classify(err error) string {
	var alert tls.AlertError
	var netErr net.Error
	switch {
	case errors.As(err, &alert) && alert == alertInternalError,
		strings.Contains(err.Error(), "tls: internal error"):
		return metrics.ProbeNoServingCertificate
	case errors.Is(err, syscall.ECONNREFUSED):
		return metrics.ProbeRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return metrics.ProbeTimeout
	case errors.As(err, new(x509.UnknownAuthorityError)), errors.As(err, new(x509.CertificateInvalidError)):
		return metrics.ProbeUntrusted
	}
	return metrics.ProbeOther
}

// ExpectedSANs returns the SANs a kubelet requests for addrs
// (servingcsr.KubeletTemplate), normalised and sorted as CertSANs does; none
// when the node reports no IP, since its kubelet then requests nothing.
func ExpectedSANs(addrs []corev1.NodeAddress) []string {
	tmpl := servingcsr.KubeletTemplate("", addrs)
	if tmpl == nil {
		return nil
	}
	return CertSANs(&x509.Certificate{DNSNames: tmpl.DNSNames, IPAddresses: tmpl.IPAddresses})
}

// CertSANs returns a certificate's DNS and IP SANs, normalised and sorted.
func CertSANs(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, normaliseName(n))
	}
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CompareSANs reports whether c carries exactly the SANs addrs call for, and
// which are missing from c or extra in it.
func CompareSANs(c *x509.Certificate, addrs []corev1.NodeAddress) (match bool, missing, extra []string) {
	want, got := ExpectedSANs(addrs), CertSANs(c)
	for _, s := range want {
		if !slices.Contains(got, s) {
			missing = append(missing, s)
		}
	}
	for _, s := range got {
		if !slices.Contains(want, s) {
			extra = append(extra, s)
		}
	}
	return len(missing) == 0 && len(extra) == 0, missing, extra
}

func normaliseName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }
