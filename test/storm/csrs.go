package storm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/test/controlplane"
)

// node is one registered Node of the storm, with its own client.
type node struct {
	name   string
	addrs  []corev1.NodeAddress
	client kubernetes.Interface
}

// filing is one CSR to file, as its node.
type filing struct {
	node *node
	csr  *certificatesv1.CertificateSigningRequest
	kind Kind
}

// nodeName and nodeAddr name node i and give its InternalIP: unique, inside
// 10.128.0.0/9 and so clear of the control plane's service CIDR (10.96.0.0/16).
func nodeName(i int) string { return fmt.Sprintf("storm-%05d", i) }

func nodeAddr(i int) netip.Addr {
	v := i + 1
	return netip.AddrFrom4([4]byte{10, byte(128 + v>>16), byte(v >> 8), byte(v)})
}

// maxNodes is how many unique addresses nodeAddr hands out, one kept back for
// the hostile CSR that asks for an address no node has.
const maxNodes = 127<<16 - 2

// unownedAddr is an address in the nodes' range that no node has.
var unownedAddr = nodeAddr(maxNodes)

// hostileShapes are the hostile CSRs a compromised node files with its own
// credentials, after the e2e hostile corpus (TestHostileCorpus): SANs of its
// neighbour, reserved names and addresses, an address nobody has. Each gets
// the SANs shape returns for node i of n.
var hostileShapes = []struct {
	name string
	sans func(i, n int) (dns []string, ips []netip.Addr)
}{
	{"neighbour-ip", func(i, n int) ([]string, []netip.Addr) {
		return nil, []netip.Addr{nodeAddr((i + 1) % n)}
	}},
	{"reserved-name", func(i, _ int) ([]string, []netip.Addr) {
		return []string{nodeName(i), "kubernetes.default.svc"}, []netip.Addr{nodeAddr(i)}
	}},
	{"neighbour-name", func(i, n int) ([]string, []netip.Addr) {
		return []string{nodeName((i + 1) % n)}, []netip.Addr{nodeAddr(i)}
	}},
	{"metadata-ip", func(i, _ int) ([]string, []netip.Addr) {
		return nil, []netip.Addr{nodeAddr(i), netip.MustParseAddr("169.254.169.254")}
	}},
	{"unowned-ip", func(int, int) ([]string, []netip.Addr) {
		return nil, []netip.Addr{unownedAddr}
	}},
}

// registerNodes creates n Nodes, each as the node itself with its own client
// certificate, as kubelets register, with an InternalIP and a Hostname.
func registerNodes(ctx context.Context, cp *controlplane.ControlPlane, n, clients int) ([]*node, error) {
	nodes := make([]*node, n)
	err := Parallel(ctx, n, clients, func(ctx context.Context, i int) error {
		name := nodeName(i)
		cfg, err := cp.NodeConfig(name)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		nd := &node{name: name, client: cs, addrs: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeAddr(i).String()},
			{Type: corev1.NodeHostName, Address: name},
		}}
		created, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register node %s: %w", name, err)
		}
		created.Status.Addresses = nd.addrs
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", name, err)
		}
		nodes[i] = nd
		return nil
	})
	return nodes, err
}

// plan returns the CSRs to file, node by node: for every node its kubelet's
// CSR for exactly its addresses (servingcsr.KubeletTemplate) and, for one node
// in hostileEvery, a hostile CSR filed just before it. The hostile CSR's name
// sorts first, so it is the older of the two even within one second, and the
// kubelet's, the node's newest, is decided first (see servingcsr.Newer).
func plan(nodes []*node, hostileEvery int) ([][]filing, error) {
	out := make([][]filing, len(nodes))
	for i, nd := range nodes {
		if i%hostileEvery == hostileEvery-1 {
			shape := hostileShapes[(i/hostileEvery)%len(hostileShapes)]
			dns, ips := shape.sans(i, len(nodes))
			tmpl := &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "system:node:" + nd.name, Organization: []string{"system:nodes"}},
				DNSNames: dns,
			}
			for _, ip := range ips {
				tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
			}
			csr, err := newCSR(nd.name+"-hostile-"+shape.name, tmpl)
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], filing{node: nd, csr: csr, kind: Hostile})
		}
		csr, err := newCSR(nd.name+"-serving", servingcsr.KubeletTemplate(nd.name, nd.addrs))
		if err != nil {
			return nil, err
		}
		out[i] = append(out[i], filing{node: nd, csr: csr, kind: Legitimate})
	}
	return out, nil
}

// newCSR signs tmpl with a fresh P-256 key, as a kubelet does, into a
// kubelet-serving CSR named name with the kubelet's usages.
func newCSR(name string, tmpl *x509.CertificateRequest) (*certificatesv1.CertificateSigningRequest, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("CSR %s: %w", name, err)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, nil
}

// filer files the plan at a steady rate and counts its progress.
type filer struct {
	filed   atomic.Int64 // CSRs the API server has
	retries atomic.Int64 // creates retried after a failure
	done    chan struct{}
	err     error // set before done is closed
}

// file files the CSRs of every node of nodes from clients goroutines, a node's
// in order, at rate CSRs per second in all, each with its node's client. A
// create that fails for any reason but an invalid request is retried with
// backoff until ctx ends, as a kubelet keeps asking; AlreadyExists means an
// earlier try got through.
func file(ctx context.Context, nodes [][]filing, clients int, rate float64) *filer {
	f := &filer{done: make(chan struct{})}
	// due[i] is how many CSRs are filed before node i's.
	due := make([]int, len(nodes))
	for i := 1; i < len(nodes); i++ {
		due[i] = due[i-1] + len(nodes[i-1])
	}
	start := time.Now()
	go func() {
		defer close(f.done)
		f.err = Parallel(ctx, len(nodes), clients, func(ctx context.Context, i int) error {
			// Pacing, not a decision: the storm arrives at a steady rate.
			at := start.Add(time.Duration(float64(due[i]) / rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return ctx.Err()
			}
			for _, fl := range nodes[i] {
				if err := f.create(ctx, fl); err != nil {
					return err
				}
				f.filed.Add(1)
			}
			return nil
		})
	}()
	return f
}

func (f *filer) create(ctx context.Context, fl filing) error {
	backoff := 100 * time.Millisecond
	for {
		_, err := fl.node.client.CertificatesV1().CertificateSigningRequests().Create(ctx, fl.csr, metav1.CreateOptions{})
		switch {
		case err == nil, apierrors.IsAlreadyExists(err):
			return nil
		case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), ctx.Err() != nil:
			return fmt.Errorf("create CSR %s as %s: %w", fl.csr.Name, fl.node.name, err)
		}
		f.retries.Add(1)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("create CSR %s as %s: %w (last error: %w)", fl.csr.Name, fl.node.name, ctx.Err(), err)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Parallel calls f for 0..n-1 from workers goroutines and returns the first
// error; after an error the remaining indexes are skipped.
func Parallel(ctx context.Context, n, workers int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
