package approval

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// TestIssuedCertificateHidingPEM: a node files a CSR the policy approves — its own name and
// address, an RSA-4096 key — whose modulus carries, in its top half (chosen, the primes found
// to fit: testdata/rsa4096-pem-in-modulus.key), a PEM block of a forged certificate. The signer
// copies the key into the certificate it issues, so the DER the cache keeps of the issued CSR
// (finalCSR) holds that PEM block verbatim. The monitor must read the certificate the signer
// issued, not the forged one inside it: a forged one that the cluster CA did not sign would
// make monitor.Signs tell that the cluster CA signs no kubelet-serving certificate, and the
// probes of every node would stop verifying against it.
func TestIssuedCertificateHidingPEM(t *testing.T) {
	keyPEM, err := os.ReadFile("testdata/rsa4096-pem-in-modulus.key")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	req, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:node-a", Organization: []string{"system:nodes"}},
		DNSNames:    []string{"node-a"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.10")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := csrtest.New(t, csrtest.PEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req})))

	// The policy approves it: nothing in it is not the node's own.
	f := newFixture(t, enforce(), nodeA(), csr)
	if _, err := f.reconcile(t, csr.Name); err != nil {
		t.Fatalf("Reconcile() error = %v", err)
	}
	if w := f.writer.written(); len(w) != 1 || w[0].Conditions[0].Type != certificatesv1.CertificateApproved {
		t.Fatalf("UpdateApproval calls = %+v, want one approval", w)
	}

	// The signer issues it as kube-controller-manager does: the request's subject, SANs and key.
	parsed, err := x509.ParseCertificateRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubelet-serving-ca"},
		NotBefore: csrtest.Created.Add(-time.Hour), NotAfter: csrtest.Created.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: parsed.Subject, DNSNames: parsed.DNSNames, IPAddresses: parsed.IPAddresses,
		NotBefore: csrtest.Created, NotAfter: csrtest.Created.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, parsed.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approvedCondition(csrtest.Created)}
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	cached, err := trimCSR(csr.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	for name, c := range map[string]*certificatesv1.CertificateSigningRequest{"api": csr, "cache": cached.(*certificatesv1.CertificateSigningRequest)} {
		issued := monitor.Issued([]certificatesv1.CertificateSigningRequest{*c})
		got := issued["node-a"]
		if got == nil || got.SerialNumber.Cmp(big.NewInt(42)) != 0 {
			t.Errorf("%s: Issued()[node-a] = %v, want the issued certificate (serial 42)", name, got)
			continue
		}
		if signs, known := monitor.Signs(pool, issued); !signs || !known {
			t.Errorf("%s: Signs() = %v, %v, want true, true", name, signs, known)
		}
	}
}
