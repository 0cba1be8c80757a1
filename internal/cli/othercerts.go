package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"time"

	"k8s.io/client-go/rest"
)

// otherCert is a certificate an operator checks in the same breath as the
// kubelets': the API server's serving certificate, the kubeconfig's client
// certificate.
type otherCert struct {
	Name            string    `json:"name"`
	Subject         string    `json:"subject"`
	Issuer          string    `json:"issuer"`
	Expires         time.Time `json:"expires"`
	ResidualSeconds int64     `json:"residualSeconds"`
	Source          string    `json:"source"`
}

// otherCerts reads the API server's serving certificate (from a TLS
// handshake with the kubeconfig's server) and the kubeconfig's client
// certificate, when it uses one. What cannot be read is left out.
func otherCerts(ctx context.Context, cfg *rest.Config, now time.Time) []otherCert {
	var out []otherCert
	add := func(name, source string, c *x509.Certificate) {
		out = append(out, otherCert{
			Name: name, Subject: c.Subject.CommonName, Issuer: c.Issuer.CommonName, Expires: c.NotAfter.UTC(),
			ResidualSeconds: int64(c.NotAfter.Sub(now) / time.Second), Source: source,
		})
	}
	if u, err := url.Parse(cfg.Host); err == nil && u.Scheme == "https" {
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only read
		if conn, err := d.DialContext(ctx, "tcp", host); err == nil {
			add("api-server", "tls "+host, conn.(*tls.Conn).ConnectionState().PeerCertificates[0])
			conn.Close()
		}
	}
	data := cfg.CertData
	if len(data) == 0 && cfg.CertFile != "" {
		data, _ = os.ReadFile(cfg.CertFile)
	}
	if block, _ := pem.Decode(data); block != nil {
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			add("kubeconfig-client", "kubeconfig", c)
		}
	}
	return out
}
