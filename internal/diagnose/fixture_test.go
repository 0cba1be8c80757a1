package diagnose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// now is the time of every test snapshot.
var now = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

var testKey = sync.OnceValue(newKey)

// newCA returns a self-signed CA certificate named cn with key.
func newCA(cn string, key crypto.Signer) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-365 * 24 * time.Hour),
		NotAfter:              now.Add(9 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func newKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// servingCA signs the test serving certificates, with testKey; otherCA is an
// unrelated CA with its own key.
var (
	servingCA = sync.OnceValue(func() *x509.Certificate { return newCA("kubelet-serving-ca", testKey()) })
	otherCA   = sync.OnceValue(func() *x509.Certificate { return newCA("kubernetes", newKey()) })
)

// leafSpec describes a kubelet serving certificate.
type leafSpec struct {
	node      string
	ip        string
	notBefore time.Time
	notAfter  time.Time
	extraDNS  []string
	issuer    *x509.Certificate
	issuerKey crypto.Signer
}

// newLeaf returns a serving certificate for s.node.
func newLeaf(t testing.TB, s leafSpec) *x509.Certificate {
	t.Helper()
	if s.issuer == nil {
		s.issuer, s.issuerKey = servingCA(), testKey()
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "system:node:" + s.node, Organization: []string{"system:nodes"}},
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		DNSNames:     append([]string{s.node}, s.extraDNS...),
		IPAddresses:  []net.IP{net.ParseIP(s.ip)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.issuer, testKey().Public(), s.issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// yearCert is a one-year certificate issued 30 days before now.
func yearCert(t testing.TB, node, ip string) *x509.Certificate {
	return newLeaf(t, leafSpec{node: node, ip: ip, notBefore: now.Add(-30 * 24 * time.Hour), notAfter: now.Add(335 * 24 * time.Hour)})
}

// newNode returns a Node with a Hostname and an InternalIP; os is its osImage.
func newNode(name, ip, os string, controlPlane bool) corev1.Node {
	n := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}},
			NodeInfo:  corev1.NodeSystemInfo{OSImage: os},
		},
	}
	if controlPlane {
		n.Labels = map[string]string{"node-role.kubernetes.io/control-plane": ""}
	}
	return n
}

const (
	talosOS  = "Talos (v1.13.2)"
	ubuntuOS = "Ubuntu 24.04.2 LTS"
)

// newCSR returns a kubelet-serving CSR named name from node at ip, created age before now.
func newCSR(t testing.TB, name, node, ip string, age time.Duration) certificatesv1.CertificateSigningRequest {
	t.Helper()
	return *csrtest.New(t, csrtest.Node(node), csrtest.Name(name), csrtest.IPAddresses(ip), csrtest.CreatedAt(now.Add(-age)))
}

// withCondition adds a condition of type typ, updated ago before now.
func withCondition(csr certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType, reason, message string, ago time.Duration) certificatesv1.CertificateSigningRequest {
	at := metav1.NewTime(now.Add(-ago))
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastUpdateTime: at, LastTransitionTime: at,
	})
	return csr
}

// issuedCSR is an approved CSR carrying cert.
func issuedCSR(t testing.TB, name, node, ip string, age time.Duration, cert *x509.Certificate) certificatesv1.CertificateSigningRequest {
	csr := withCondition(newCSR(t, name, node, ip, age), certificatesv1.CertificateApproved, "AutoApproved", "approved by csrguard", age)
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return csr
}

// probeOK is a probe that saw cert on node, matching its SANs.
func probeOK(node, ip string, cert *x509.Certificate) monitor.Result {
	return monitor.Result{Node: node, Endpoint: ip + ":10250", State: metrics.ProbeOK, Cert: cert, SANsMatch: true}
}

// probeNoCert is the incident's probe.
func probeNoCert(node, ip string) monitor.Result {
	return monitor.Result{Node: node, Endpoint: ip + ":10250", State: metrics.ProbeNoServingCertificate, Err: errors.New("remote error: tls: internal error")}
}

func probeFailed(node, ip, state, msg string) monitor.Result {
	return monitor.Result{Node: node, Endpoint: ip + ":10250", State: state, Err: errors.New(msg)}
}

var (
	approveDecision = policy.Decision{Verdict: policy.Approve, Reason: policy.AllChecksPassed, Message: "all checks passed"}
	denyDecision    = policy.Decision{Verdict: policy.Deny, Reason: policy.ReservedName, Message: `reserved: DNS SAN "kubernetes.default.svc" is reserved`}
	holdDecision    = policy.Decision{Verdict: policy.Hold, Reason: policy.NodeNotFound, Message: `node-exists: node "node-z" does not exist`}
)

func csrguardApprover() Approver {
	return Approver{Name: "csrguard", Namespace: "csrguard", Kind: servingcsr.ApproverCSRGuard, Where: "Deployment csrguard/csrguard", Ready: true, Mode: "enforce", Detail: "2/2 replicas ready, image ghcr.io/csrguard/csrguard:v0.1.0"}
}

// hardened is the policy of the test snapshots: the default, with the node
// network allowed, so only tests about that finding see it.
func hardened() policy.Config {
	cfg := policy.DefaultConfig()
	cfg.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	return cfg
}

// healthy is a three-node cluster where everything works: csrguard runs,
// every kubelet serves a one-year certificate from a dedicated CA, and the
// last rotation's CSRs are issued.
func healthy(t testing.TB, os string) Snapshot {
	t.Helper()
	s := Snapshot{Now: now, Policy: hardened(), Probes: map[string]monitor.Result{}, Decisions: map[string]policy.Decision{}, Approvers: []Approver{csrguardApprover()}}
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		ip := "10.0.0." + string(rune('1'+i))
		s.Nodes = append(s.Nodes, newNode(name, ip, os, i == 0))
		cert := yearCert(t, name, ip)
		s.Probes[name] = probeOK(name, ip, cert)
		s.CSRs = append(s.CSRs, issuedCSR(t, "csr-"+name+"-1", name, ip, 20*time.Minute, cert))
	}
	kube.SortCSRs(s.CSRs)
	return s
}

// incident is the incident the README opens with, on Talos: rotation on,
// nothing approves, two kubelets without a serving certificate and their CSRs
// piling up.
func incident(t testing.TB, os string) Snapshot {
	t.Helper()
	s := healthy(t, os)
	s.Approvers = nil
	s.CSRs = nil
	s.Probes["node-a"] = probeNoCert("node-a", "10.0.0.1")
	s.Probes["node-b"] = probeNoCert("node-b", "10.0.0.2")
	for _, c := range []struct {
		name, node, ip string
		age            time.Duration
	}{
		{"csr-a1", "node-a", "10.0.0.1", 47 * time.Minute},
		{"csr-a2", "node-a", "10.0.0.1", 32 * time.Minute},
		{"csr-a3", "node-a", "10.0.0.1", 17 * time.Minute},
		{"csr-a4", "node-a", "10.0.0.1", 2 * time.Minute},
		{"csr-b1", "node-b", "10.0.0.2", 41 * time.Minute},
		{"csr-b2", "node-b", "10.0.0.2", 26 * time.Minute},
	} {
		s.CSRs = append(s.CSRs, newCSR(t, c.name, c.node, c.ip, c.age))
		s.Decisions[c.name] = approveDecision
	}
	kube.SortCSRs(s.CSRs)
	return s
}
