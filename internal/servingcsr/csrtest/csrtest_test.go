package csrtest_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"net/netip"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func parse(t *testing.T, pemBytes []byte) *x509.CertificateRequest {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestNewDefault(t *testing.T) {
	csr := parse(t, csrtest.New(t).Spec.Request)
	type shape struct {
		CN, Curve string
		O, DNS    []string
		IPs       []string
	}
	got := shape{CN: csr.Subject.CommonName, O: csr.Subject.Organization, DNS: csr.DNSNames}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); ok {
		got.Curve = k.Curve.Params().Name
	}
	for _, ip := range csr.IPAddresses {
		got.IPs = append(got.IPs, ip.String())
	}
	want := shape{CN: "system:node:node-a", Curve: "P-256", O: []string{"system:nodes"}, DNS: []string{"node-a"}, IPs: []string{"10.0.0.10"}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("default CSR mismatch (-got +want):\n%s", diff)
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name string
		key  csrtest.KeyType
		want string
	}{
		{name: "ecdsa_p224", key: csrtest.ECDSAP224, want: "P-224"},
		{name: "ecdsa_p384", key: csrtest.ECDSAP384, want: "P-384"},
		{name: "ecdsa_p521", key: csrtest.ECDSAP521, want: "P-521"},
		{name: "rsa_1024", key: csrtest.RSA1024, want: "RSA-1024"},
		{name: "rsa_2048", key: csrtest.RSA2048, want: "RSA-2048"},
		{name: "ed25519", key: csrtest.Ed25519, want: "Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			switch k := parse(t, csrtest.New(t, csrtest.Key(tt.key)).Spec.Request).PublicKey.(type) {
			case *ecdsa.PublicKey:
				got = k.Curve.Params().Name
			case *rsa.PublicKey:
				got = "RSA-" + strconv.Itoa(k.N.BitLen())
			case ed25519.PublicKey:
				got = "Ed25519"
			}
			if got != tt.want {
				t.Errorf("key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSANExtension(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.0.0.10").AsSlice()
	ext := csrtest.SANExtension(t,
		asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("node-a")},
		asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: mapped},
	)
	// The default DNS and IP SANs must give way to the explicit extension.
	csr := parse(t, csrtest.New(t, csrtest.DNSNames("ignored"), csrtest.Extensions(ext)).Spec.Request)
	if diff := cmp.Diff(csr.DNSNames, []string{"node-a"}); diff != "" {
		t.Errorf("DNS SANs mismatch (-got +want):\n%s", diff)
	}
	if len(csr.IPAddresses) != 1 || len(csr.IPAddresses[0]) != 16 {
		t.Errorf("IP SANs = %v, want one 16-byte address", csr.IPAddresses)
	}
}
