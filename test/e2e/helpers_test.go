package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
	"github.com/csrguard/csrguard/test/netns"
)

// cluster is a control plane with simulated kubelets, for one test.
type cluster struct {
	t      *testing.T
	cp     *controlplane.ControlPlane
	admin  kubernetes.Interface
	pool   *netns.Pool
	nodes  []*kubelet.Kubelet
	byName map[string]*kubelet.Kubelet
	// guardConfig is who startCSRGuard runs csrguard as; nil for an
	// administrator.
	guardConfig *rest.Config
}

func newCluster(t *testing.T, opts controlplane.Options) *cluster {
	t.Helper()
	cp := controlplane.StartForTest(t, opts)
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	// csrguard keeps its records in its namespace, as installed.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: guardNamespace}}
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", guardNamespace, err)
	}
	return &cluster{t: t, cp: cp, admin: admin, pool: netns.NewPool(), byName: map[string]*kubelet.Kubelet{}}
}

// guardNamespace is the namespace csrguard runs in, as installed.
const guardNamespace = "csrguard"

// addKubelet starts a simulated kubelet with its own node identity. With no
// addresses given it gets an InternalIP from the pool and a Hostname.
func (c *cluster) addKubelet(ctx context.Context, name, osImage string, addrs ...corev1.NodeAddress) *kubelet.Kubelet {
	c.t.Helper()
	cfg, err := c.cp.NodeConfig(name)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(addrs) == 0 {
		addrs = kubelet.Addresses(name, c.pool.Next())
	}
	k, err := kubelet.Start(ctx, kubelet.Options{Name: name, Config: cfg, Addresses: addrs, OSImage: osImage})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(k.Stop)
	c.nodes = append(c.nodes, k)
	c.byName[name] = k
	return k
}

// csrsOf lists the kubelet-serving CSRs requested by node.
func (c *cluster) csrsOf(ctx context.Context, node string) []certificatesv1.CertificateSigningRequest {
	c.t.Helper()
	list, err := c.admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		c.t.Fatalf("list CSRs: %v", err)
	}
	var out []certificatesv1.CertificateSigningRequest
	for _, csr := range list.Items {
		if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName && csr.Spec.Username == "system:node:"+node {
			out = append(out, csr)
		}
	}
	return out
}

// waitPending waits until node has a Pending kubelet-serving CSR not in seen
// and returns it.
func (c *cluster) waitPending(ctx context.Context, node string, seen ...string) certificatesv1.CertificateSigningRequest {
	c.t.Helper()
	var found *certificatesv1.CertificateSigningRequest
	controlplane.Eventually(c.t, ctx, fmt.Sprintf("a new pending CSR from %s", node), func() bool {
		for _, csr := range c.csrsOf(ctx, node) {
			if len(csr.Status.Conditions) == 0 && !slices.Contains(seen, csr.Name) {
				found = &csr
				return true
			}
		}
		return false
	})
	return *found
}

// approve approves a CSR through the API, as `kubectl certificate approve` does.
func (c *cluster) approve(ctx context.Context, csr certificatesv1.CertificateSigningRequest) {
	c.t.Helper()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "KubectlApprove", Message: "approved by the e2e test as an administrator",
	})
	if _, err := c.admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, &csr, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("approve %s: %v", csr.Name, err)
	}
}

// handshake dials a kubelet endpoint and returns its serving certificate. With
// roots set the chain is verified against them.
func handshake(ctx context.Context, endpoint string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below against roots, by IP, as the API server does
		MinVersion:         tls.VersionTLS12,
	}}
	conn, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if roots != nil {
		host, _, _ := net.SplitHostPort(endpoint)
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return chain[0], err
		}
	}
	return chain[0], nil
}

// sans returns a certificate's SANs as the sorted strings a Node reports.
func sans(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		out = append(out, a.Unmap().String())
	}
	slices.Sort(out)
	return out
}

// addressSANs returns what the kubelet puts into its CSR for addrs.
func addressSANs(addrs []corev1.NodeAddress) []string {
	var out []string
	for _, a := range addrs {
		if !slices.Contains(out, a.Address) {
			out = append(out, a.Address)
		}
	}
	slices.Sort(out)
	return out
}

func pool(t *testing.T, pemBytes []byte) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in PEM")
	}
	return p
}

// waitClaim waits until csrguard has recorded that node owns the address key
// (policy.AddressKey) in its namespace.
func (c *cluster) waitClaim(ctx context.Context, key, node string) {
	c.t.Helper()
	reader, err := client.New(c.cp.AdminConfig(), client.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	store := history.NewStore(reader, nil, guardNamespace)
	controlplane.Eventually(c.t, ctx, fmt.Sprintf("csrguard to record that %s owns %s", node, key), func() bool {
		claims, _, err := store.LoadClaims(ctx)
		return err == nil && claims[key].Node == node
	})
}
