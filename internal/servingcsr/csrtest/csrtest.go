// Package csrtest builds real, signed kubelet-serving CertificateSigningRequests for tests.
//
// It owns test fixtures only and must not be imported by production code. Keys are generated
// once per key type and process, so building many CSRs stays fast.
package csrtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Created is the creation timestamp New gives a CSR unless Created is used.
var Created = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// KeyType selects the key a CSR is signed with.
type KeyType int

// The key types New can sign with. Allowed and forbidden ones alike, so tests can cover both.
const (
	ECDSAP256 KeyType = iota + 1
	ECDSAP384
	ECDSAP224
	ECDSAP521
	RSA1024
	RSA2048
	RSA4096
	Ed25519
)

// keys holds one lazily generated key per type; RSA generation is slow enough to matter.
var keys = map[KeyType]func() crypto.Signer{
	ECDSAP256: ecdsaKey(elliptic.P256()),
	ECDSAP384: ecdsaKey(elliptic.P384()),
	ECDSAP224: ecdsaKey(elliptic.P224()),
	ECDSAP521: ecdsaKey(elliptic.P521()),
	RSA1024:   rsaKey(1024),
	RSA2048:   rsaKey(2048),
	RSA4096:   rsaKey(4096),
	Ed25519: sync.OnceValue(func() crypto.Signer {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return must(k, err)
	}),
}

func ecdsaKey(c elliptic.Curve) func() crypto.Signer {
	return sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(c, rand.Reader)) })
}

func rsaKey(bits int) func() crypto.Signer {
	return sync.OnceValue(func() crypto.Signer { return must(rsa.GenerateKey(rand.Reader, bits)) })
}

func must[K crypto.Signer](k K, err error) crypto.Signer {
	if err != nil {
		panic("csrtest: generate key: " + err.Error())
	}
	return k
}

// spec is what the options build up before New signs it.
type spec struct {
	name, signer, username string
	groups                 []string
	usages                 []certificatesv1.KeyUsage
	expiration             *int32
	created                time.Time
	subject                pkix.Name
	dnsNames, ips, emails  []string
	uris                   []string
	key                    KeyType
	extensions             []pkix.Extension
	pem                    []byte
}

// Option changes one aspect of the CSR New builds. Options apply in order.
type Option func(*spec)

// Node makes the CSR come from node name: it sets the CSR name, the username, the subject common
// name and the DNS SANs (to just name). It leaves the IP SANs alone.
func Node(name string) Option {
	return func(s *spec) {
		s.name = "csr-" + name
		s.username = "system:node:" + name
		s.subject.CommonName = "system:node:" + name
		s.dnsNames = []string{name}
	}
}

// Name sets metadata.name.
func Name(name string) Option { return func(s *spec) { s.name = name } }

// SignerName sets spec.signerName.
func SignerName(signer string) Option { return func(s *spec) { s.signer = signer } }

// Username sets spec.username without touching the subject.
func Username(username string) Option { return func(s *spec) { s.username = username } }

// Groups sets spec.groups.
func Groups(groups ...string) Option { return func(s *spec) { s.groups = groups } }

// Usages sets spec.usages.
func Usages(usages ...certificatesv1.KeyUsage) Option {
	return func(s *spec) { s.usages = usages }
}

// ExpirationSeconds sets spec.expirationSeconds.
func ExpirationSeconds(seconds int32) Option {
	return func(s *spec) { s.expiration = &seconds }
}

// CreatedAt sets metadata.creationTimestamp.
func CreatedAt(t time.Time) Option { return func(s *spec) { s.created = t } }

// CommonName sets the subject common name of the PEM request.
func CommonName(cn string) Option { return func(s *spec) { s.subject.CommonName = cn } }

// Organization sets the subject organizations of the PEM request.
func Organization(o ...string) Option { return func(s *spec) { s.subject.Organization = o } }

// Subject replaces the whole subject of the PEM request.
func Subject(name pkix.Name) Option { return func(s *spec) { s.subject = name } }

// DNSNames sets the DNS SANs.
func DNSNames(names ...string) Option { return func(s *spec) { s.dnsNames = names } }

// IPAddresses sets the IP SANs. crypto/x509 writes IPv4-mapped IPv6 addresses as 4 bytes; use
// SANExtension for the 16-byte form.
func IPAddresses(ips ...string) Option { return func(s *spec) { s.ips = ips } }

// Emails sets the email SANs.
func Emails(emails ...string) Option { return func(s *spec) { s.emails = emails } }

// URIs sets the URI SANs.
func URIs(uris ...string) Option { return func(s *spec) { s.uris = uris } }

// Key sets the key type the request is signed with.
func Key(k KeyType) Option { return func(s *spec) { s.key = k } }

// Extensions adds extensions to the PEM request. A subjectAltName extension among them replaces
// the SANs from the other options.
func Extensions(exts ...pkix.Extension) Option {
	return func(s *spec) { s.extensions = append(s.extensions, exts...) }
}

// PEM sets spec.request verbatim instead of generating a request.
func PEM(pemBytes []byte) Option { return func(s *spec) { s.pem = pemBytes } }

// TamperSignature returns pemBytes, one PEM request, with a bit of its signature flipped: a
// well-formed request whose signature does not verify.
func TamperSignature(t testing.TB, pemBytes []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("TamperSignature: not PEM")
	}
	der := bytes.Clone(block.Bytes)
	der[len(der)-1] ^= 1
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
}

// New returns a CSR built from opts applied over a valid kubelet serving CSR for node "node-a":
// ECDSA P-256, CN system:node:node-a, O [system:nodes], usages [digital signature, server auth],
// username system:node:node-a, groups [system:nodes system:authenticated], DNS SAN node-a and
// IP SAN 10.0.0.10, created at Created.
func New(t testing.TB, opts ...Option) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	s := spec{
		signer:  certificatesv1.KubeletServingSignerName,
		groups:  []string{"system:nodes", "system:authenticated"},
		usages:  []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		created: Created,
		subject: pkix.Name{Organization: []string{"system:nodes"}},
		ips:     []string{"10.0.0.10"},
		key:     ECDSAP256,
	}
	Node("node-a")(&s)
	for _, opt := range opts {
		opt(&s)
	}
	if s.pem == nil {
		s.pem = sign(t, s)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, CreationTimestamp: metav1.NewTime(s.created)},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           s.pem,
			SignerName:        s.signer,
			Username:          s.username,
			Groups:            s.groups,
			Usages:            s.usages,
			ExpirationSeconds: s.expiration,
		},
	}
}

// sign returns the PEM request described by s, signed with its key.
func sign(t testing.TB, s spec) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:         s.subject,
		DNSNames:        s.dnsNames,
		EmailAddresses:  s.emails,
		ExtraExtensions: s.extensions,
	}
	for _, ip := range s.ips {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			t.Fatalf("csrtest: invalid IP %q", ip)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, parsed)
	}
	for _, u := range s.uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("csrtest: invalid URI %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	key, ok := keys[s.key]
	if !ok {
		t.Fatalf("csrtest: unknown key type %d", s.key)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key())
	if err != nil {
		t.Fatalf("csrtest: create certificate request: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// SANExtension returns a subjectAltName extension holding exactly names, for shapes crypto/x509
// does not write itself: 16-byte IPv4-mapped addresses, otherName and other general name types.
// Build each name as asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: <GeneralName tag>, ...}.
func SANExtension(t testing.TB, names ...asn1.RawValue) pkix.Extension {
	t.Helper()
	value, err := asn1.Marshal(names)
	if err != nil {
		t.Fatalf("csrtest: marshal subjectAltName: %v", err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: value}
}
