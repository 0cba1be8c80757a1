// Package e2e holds csrguard's end-to-end tests. They run against a real
// etcd, kube-apiserver and kube-controller-manager (test/controlplane) and
// simulated kubelets that use client-go's certificate manager (test/kubelet).
package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestIncidentReproduced replays the outage csrguard exists for: kubelets
// with serving-certificate rotation on and no approver have Pending CSRs and
// answer TLS with "tls: internal error"; once the CSRs are approved the real
// signer issues certificates from the dedicated kubelet-serving CA, the
// kubelets pick them up and serve certificates carrying their addresses.
func TestIncidentReproduced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newCluster(t, controlplane.Options{})
	for _, name := range []string{"talos-cp-1", "talos-worker-1", "talos-worker-2"} {
		c.addKubelet(ctx, name, kubelet.Talos)
	}

	pending := map[string]certificatesv1.CertificateSigningRequest{}
	for _, k := range c.nodes {
		pending[k.Name()] = c.waitPending(ctx, k.Name())
	}
	for _, k := range c.nodes {
		_, err := handshake(ctx, k.Endpoint(), nil)
		if err == nil || !strings.Contains(err.Error(), "tls: internal error") {
			t.Fatalf("handshake with %s before approval: got %v, want remote error: tls: internal error", k.Name(), err)
		}
	}

	for _, k := range c.nodes {
		c.approve(ctx, pending[k.Name()])
	}
	servingCA, clusterCA := pool(t, c.cp.KubeletServingCAPEM), pool(t, c.cp.ClusterCAPEM)
	for _, k := range c.nodes {
		if _, err := k.WaitForCertificate(ctx, nil); err != nil {
			t.Fatal(err)
		}
		cert, err := handshake(ctx, k.Endpoint(), servingCA)
		if err != nil {
			t.Fatalf("handshake with %s after approval: %v", k.Name(), err)
		}
		if diff := cmp.Diff(sans(cert), addressSANs(k.Addresses())); diff != "" {
			t.Errorf("%s serving certificate SANs (-got +want):\n%s", k.Name(), diff)
		}
		if cert.Subject.CommonName != "system:node:"+k.Name() {
			t.Errorf("%s serving certificate CN = %q", k.Name(), cert.Subject.CommonName)
		}
		// The dedicated CA is the point: pods trust the cluster CA, and a
		// kubelet-serving certificate must not verify against it.
		if _, err := cert.Verify(x509.VerifyOptions{Roots: clusterCA}); err == nil {
			t.Errorf("%s serving certificate chains to the cluster CA; want the dedicated kubelet-serving CA only", k.Name())
		}
	}
}

// TestNodeRestriction shows the admission plugin in force: a node may only ask
// for a serving certificate in its own name.
func TestNodeRestriction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newCluster(t, controlplane.Options{})
	nodeA := c.nodeClient("node-a")

	own := csrtest.New(t, csrtest.Node("node-a"))
	if _, err := nodeA.CertificatesV1().CertificateSigningRequests().Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatalf("node-a creating its own serving CSR: %v", err)
	}
	forB := csrtest.New(t, csrtest.Node("node-b"))
	_, err := nodeA.CertificatesV1().CertificateSigningRequests().Create(ctx, forB, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("node-a creating a serving CSR with CN system:node:node-b: got %v, want Forbidden", err)
	}

	// NodeRestriction also keeps node-a from writing node-b's Node.
	if _, err := nodeA.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("node-a creating Node node-b: got %v, want Forbidden", err)
	}
}

// TestAPIServerVerifiesRequests shows what csrguard relies on when it does not verify the
// signature of a CSR it reads from the API server (servingcsr.FromAPI): the API server refuses a
// request whose signature does not verify, and no update — of the CSR, its status or its approval,
// even by an admin — changes a stored CSR's request.
func TestAPIServerVerifiesRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newCluster(t, controlplane.Options{})
	nodeA := c.nodeClient("node-a")
	csrs := nodeA.CertificatesV1().CertificateSigningRequests()

	tampered := csrtest.New(t, csrtest.Node("node-a"), csrtest.Name("tampered"))
	tampered.Spec.Request = csrtest.TamperSignature(t, tampered.Spec.Request)
	if _, err := csrs.Create(ctx, tampered, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.request") {
		t.Fatalf("creating a CSR whose signature does not verify: got %v, want Invalid on spec.request", err)
	}

	stored, err := csrs.Create(ctx, csrtest.New(t, csrtest.Node("node-a"), csrtest.Name("stored")), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a valid CSR: %v", err)
	}
	want := stored.Spec.Request
	// Another request, validly signed, for an address that is not node-a's.
	other := csrtest.New(t, csrtest.Node("node-a"), csrtest.IPAddresses("192.0.2.99")).Spec.Request
	admin := c.admin.CertificatesV1().CertificateSigningRequests()
	updates := map[string]func(*certificatesv1.CertificateSigningRequest) error{
		"update": func(csr *certificatesv1.CertificateSigningRequest) error {
			_, err := admin.Update(ctx, csr, metav1.UpdateOptions{})
			return err
		},
		"status": func(csr *certificatesv1.CertificateSigningRequest) error {
			_, err := admin.UpdateStatus(ctx, csr, metav1.UpdateOptions{})
			return err
		},
		"approval": func(csr *certificatesv1.CertificateSigningRequest) error {
			_, err := admin.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
			return err
		},
	}
	for _, name := range []string{"update", "status", "approval"} {
		current, err := admin.Get(ctx, stored.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		current.Spec.Request = other
		// Refused or ignored, the stored request must stay what was verified at creation.
		err = updates[name](current)
		got, gerr := admin.Get(ctx, stored.Name, metav1.GetOptions{})
		if gerr != nil {
			t.Fatal(gerr)
		}
		if !bytes.Equal(got.Spec.Request, want) {
			t.Errorf("%s with another spec.request (err %v) changed the stored request", name, err)
		}
		t.Logf("%s with another spec.request: err %v; stored request unchanged", name, err)
	}
}

// TestKubeletRotation shows the simulated kubelet rotates like a real one: a
// second rotation files a new CSR, and changed addresses file a CSR for the
// new addresses.
func TestKubeletRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newCluster(t, controlplane.Options{})
	k := c.addKubelet(ctx, "rotating", kubelet.Debian)

	first := c.waitPending(ctx, k.Name())
	c.approve(ctx, first)
	cert1, err := k.WaitForCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}

	go func() { _ = k.Rotate(ctx) }()
	second := c.waitPending(ctx, k.Name(), first.Name)
	c.approve(ctx, second)
	cert2, err := k.WaitForCertificate(ctx, cert1)
	if err != nil {
		t.Fatal(err)
	}

	moved := kubelet.Addresses(k.Name(), c.pool.Next(), corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "rotating.internal.example"})
	if err := k.SetAddresses(ctx, moved); err != nil {
		t.Fatal(err)
	}
	third := c.waitPending(ctx, k.Name(), first.Name, second.Name)
	c.approve(ctx, third)
	cert3, err := k.WaitForCertificate(ctx, cert2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sans(cert3), addressSANs(moved)); diff != "" {
		t.Errorf("certificate after address change: SANs (-got +want):\n%s", diff)
	}
}
