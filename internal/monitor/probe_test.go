package monitor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/metrics"
)

// ca is a throwaway CA for probe tests.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-kubelet-serving-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key}
}

func (a *ca) serving(t *testing.T, notAfter time.Time, dns []string, ips ...string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "system:node:node-a"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: dns,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// kubeletSelfSigned is what a kubelet serves when serving certificate
// rotation is off (client-go's cert.GenerateSelfSignedCertKey): a leaf
// "<host>@<time>" issued by a CA "<host>-ca@<time>", both presented.
func kubeletSelfSigned(t *testing.T, notAfter time.Time, host string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: host + "-ca@1700000000"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	own := &ca{cert: c, key: key}
	leaf := own.serving(t, notAfter, []string{host})
	leaf.Certificate = append(leaf.Certificate, der)
	return leaf
}

// selfSignedLeaf is a leaf signed by its own key.
func selfSignedLeaf(t *testing.T, notAfter time.Time, host string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: host + "@1700000000"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: []string{host},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// kubelet serves TLS on 127.0.0.1 with getCert, like a kubelet's listener.
func kubelet(t *testing.T, getCert func() (*tls.Certificate, error)) *corev1.Node {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return getCert() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return nodeAt(t, ln.Addr().String())
}

func nodeAt(t *testing.T, endpoint string) *corev1.Node {
	t.Helper()
	host, port, _ := net.SplitHostPort(endpoint)
	p, _ := strconv.Atoi(port)
	n := &corev1.Node{}
	n.Name = "node-a"
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: host}, {Type: corev1.NodeHostName, Address: "node-a"}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(p)
	return n
}

func TestProbe(t *testing.T) {
	a, other := newCA(t), newCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(a.cert)
	expiry := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	good := a.serving(t, expiry, []string{"node-a"}, "127.0.0.1")

	refused := func() string { // a port nobody listens on
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	t.Cleanup(func() { silent.Close() })

	tests := []struct {
		name      string
		node      *corev1.Node
		roots     *x509.CertPool
		wantState string
		wantMatch bool
	}{
		{name: "ok", node: kubelet(t, func() (*tls.Certificate, error) { return good, nil }), roots: roots, wantState: metrics.ProbeOK, wantMatch: true},
		{name: "no_serving_certificate", node: kubelet(t, func() (*tls.Certificate, error) {
			return nil, errors.New("no serving certificate available for the kubelet")
		}), wantState: metrics.ProbeNoServingCertificate},
		{name: "untrusted", node: kubelet(t, func() (*tls.Certificate, error) {
			return other.serving(t, expiry, []string{"node-a"}, "127.0.0.1"), nil
		}), roots: roots, wantState: metrics.ProbeUntrusted, wantMatch: true},
		{name: "san_mismatch", node: kubelet(t, func() (*tls.Certificate, error) {
			return a.serving(t, expiry, []string{"node-a", "old-name"}, "10.0.0.1"), nil
		}), roots: roots, wantState: metrics.ProbeOK},
		// A kubelet with rotation off serves a certificate it signed itself,
		// for its host name only: self-signed, whatever the roots.
		{name: "self_signed", node: kubelet(t, func() (*tls.Certificate, error) {
			return kubeletSelfSigned(t, expiry, "node-a"), nil
		}), roots: roots, wantState: metrics.ProbeSelfSigned},
		{name: "self_signed_without_roots", node: kubelet(t, func() (*tls.Certificate, error) {
			return kubeletSelfSigned(t, expiry, "node-a"), nil
		}), wantState: metrics.ProbeSelfSigned},
		{name: "self_signed_leaf", node: kubelet(t, func() (*tls.Certificate, error) {
			return selfSignedLeaf(t, expiry, "node-a"), nil
		}), wantState: metrics.ProbeSelfSigned},
		{name: "refused", node: nodeAt(t, refused), wantState: metrics.ProbeRefused},
		{name: "timeout", node: nodeAt(t, silent.Addr().String()), wantState: metrics.ProbeTimeout},
		{name: "no_address", node: &corev1.Node{}, wantState: metrics.ProbeOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Prober{Timeout: 300 * time.Millisecond, Roots: tc.roots}.Probe(context.Background(), tc.node)
			if r.State != tc.wantState {
				t.Errorf("State = %q (err %v), want %q", r.State, r.Err, tc.wantState)
			}
			if r.SANsMatch != tc.wantMatch {
				t.Errorf("SANsMatch = %v (missing %v, extra %v), want %v", r.SANsMatch, r.Missing, r.Extra, tc.wantMatch)
			}
			if tc.wantState == metrics.ProbeOK && !r.Cert.NotAfter.Equal(expiry) {
				t.Errorf("NotAfter = %v, want %v", r.Cert.NotAfter, expiry)
			}
		})
	}
}

func TestCompareSANs(t *testing.T) {
	a := newCA(t)
	cert := a.serving(t, time.Now().Add(time.Hour), []string{"Node-A.", "node-a.internal"}, "10.0.0.1", "fd00::1").Leaf
	addrs := []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node-a"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.2"},
		{Type: corev1.NodeInternalIP, Address: "FD00::1"},
	}
	match, missing, extra := CompareSANs(cert, addrs)
	if match {
		t.Error("CompareSANs matched a certificate that lacks 10.0.0.2 and has node-a.internal")
	}
	if diff := cmp.Diff(missing, []string{"10.0.0.2"}); diff != "" {
		t.Errorf("missing (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(extra, []string{"node-a.internal"}); diff != "" {
		t.Errorf("extra (-got +want):\n%s", diff)
	}
	if got := ExpectedSANs([]corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "10.0.0.9"}, {Type: corev1.NodeExternalIP, Address: "::ffff:10.0.0.8"}}); !cmp.Equal(got, []string{"10.0.0.8", "10.0.0.9"}) {
		t.Errorf("ExpectedSANs with an IP Hostname and a mapped IP = %v", got)
	}
}

func TestEndpoint(t *testing.T) {
	n := &corev1.Node{}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}
	if got, _ := Endpoint(n); got != "10.0.0.1:10250" {
		t.Errorf("Endpoint prefers InternalIP on the default port: got %q", got)
	}
	n.Status.Addresses = n.Status.Addresses[:1]
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10260
	if got, _ := Endpoint(n); got != "203.0.113.1:10260" {
		t.Errorf("Endpoint falls back to ExternalIP and the reported port: got %q", got)
	}
}

func TestSigns(t *testing.T) {
	clusterCA, other := newCA(t), newCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(clusterCA.cert)
	expired := time.Now().Add(-time.Minute) // still tells who signed it
	fromCluster := clusterCA.serving(t, expired, []string{"node-a"}).Leaf
	fromOther := other.serving(t, time.Now().Add(time.Hour), []string{"node-b"}).Leaf
	tests := []struct {
		name              string
		issued            map[string]*x509.Certificate
		wantSigns, wantOK bool
	}{
		{name: "none_issued"},
		{name: "cluster_ca_signs", issued: map[string]*x509.Certificate{"a": fromCluster}, wantSigns: true, wantOK: true},
		{name: "another_signer", issued: map[string]*x509.Certificate{"b": fromOther}, wantOK: true},
		{name: "mixed", issued: map[string]*x509.Certificate{"a": fromCluster, "b": fromOther}, wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signs, ok := Signs(roots, tc.issued)
			if signs != tc.wantSigns || ok != tc.wantOK {
				t.Errorf("Signs = %v, %v; want %v, %v", signs, ok, tc.wantSigns, tc.wantOK)
			}
		})
	}
}
