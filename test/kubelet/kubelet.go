// Package kubelet simulates the serving side of a kubelet that runs with
// serverTLSBootstrap (rotate-server-certificates) on, for csrguard's tests,
// demo and dev cluster.
//
// A Kubelet registers its Node with its own node identity, reports
// status.addresses, the kubelet endpoint port and an OS image, and runs
// client-go's certificate.Manager — the kubelet's own rotation engine — with
// the kubelet's serving template: CN system:node:<name>, O system:nodes, SANs
// from the Node's addresses, signer kubernetes.io/kubelet-serving and
// certificate.DefaultKubeletServingGetUsages. It serves TLS on its InternalIP,
// and while it has no certificate the handshake fails exactly as a real
// kubelet's does: the server reports "no serving certificate available for the
// kubelet" and the client sees "remote error: tls: internal error".
//
// It runs no pods and reports no readiness beyond a Ready condition; it serves
// the node metrics metrics-server scrapes, so that kubectl top counts it.
//
// It acts as the kubelet of Options.Version, default $CSRGUARD_KUBELET_VERSION
// or DefaultVersion: a kubelet older than the API server (version skew) reports
// its version and asks with its version's usages (Usages).
package kubelet

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/certificate"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// ErrNoServingCertificate is the error a kubelet's TLS listener returns while it
// has no serving certificate; the text is the real kubelet's.
var ErrNoServingCertificate = errors.New("no serving certificate available for the kubelet")

// Talos and Debian are typical Node status.nodeInfo.osImage values.
const (
	Talos  = "Talos (v1.11.5)"
	Debian = "Debian GNU/Linux 12 (bookworm)"
)

// Options describes one simulated kubelet.
type Options struct {
	// Name is the node name. Required.
	Name string
	// Config authenticates as the node (CN system:node:<Name>). Required.
	Config *rest.Config
	// Addresses become Node status.addresses, and so the certificate's SANs.
	// The first InternalIP is where the TLS listener binds. Required.
	Addresses []corev1.NodeAddress
	// Port is the kubelet port; default 10250.
	Port int
	// OSImage is status.nodeInfo.osImage; default Debian.
	OSImage string
	// Lifetime, when set, asks the signer for certificates of that lifetime
	// (spec.expirationSeconds; the signer's minimum is 10 minutes).
	Lifetime time.Duration
	// Labels are added to the Node.
	Labels map[string]string
	// SkipRegistration uses the Node as it is instead of creating it and
	// writing its status: to compare with a real kubelet of the same name.
	SkipRegistration bool
	// Version is the kubelet's version, as in v1.34.4: Node
	// status.nodeInfo.kubeletVersion and the usages it asks for (Usages).
	// Default $CSRGUARD_KUBELET_VERSION (VersionEnv), else DefaultVersion.
	Version string
	// Template, if set, replaces servingcsr.KubeletTemplate: to show that a
	// drifted simulation is caught.
	Template func(nodeName string, addrs []corev1.NodeAddress) *x509.CertificateRequest
}

// VersionEnv names the environment variable that sets the version of every
// simulated kubelet whose Options.Version is empty: make test-matrix's skew run
// sets it to a version older than the API server's.
const VersionEnv = "CSRGUARD_KUBELET_VERSION"

// DefaultVersion is the kubelet version simulated when none is set.
const DefaultVersion = "v1.37.2"

// Usages returns the key usages the kubelet of version asks for with key:
// before v1.27 key encipherment, digital signature and server auth for every
// key type (ECDSA included); since then certificate.DefaultKubeletServingGetUsages
// (key encipherment for RSA keys only).
func Usages(version string) func(key any) []certificatesv1.KeyUsage {
	v, err := utilversion.ParseGeneric(version)
	if err == nil && v.LessThan(utilversion.MajorMinor(1, 27)) {
		return func(any) []certificatesv1.KeyUsage {
			return []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
		}
	}
	return certificate.DefaultKubeletServingGetUsages
}

// Addresses builds a kubelet's typical status.addresses: InternalIP and
// Hostname, plus any extra addresses (ExternalIP, InternalDNS, IPv6, ...).
func Addresses(hostname string, internalIP netip.Addr, extra ...corev1.NodeAddress) []corev1.NodeAddress {
	a := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: internalIP.String()},
		{Type: corev1.NodeHostName, Address: hostname},
	}
	return append(a, extra...)
}

// Kubelet is a running simulated kubelet.
type Kubelet struct {
	name   string
	client kubernetes.Interface
	port   int
	mgr    certificate.Manager
	srv    *http.Server
	ln     net.Listener

	tmpl      func(string, []corev1.NodeAddress) *x509.CertificateRequest
	mu        sync.Mutex
	addresses []corev1.NodeAddress
}

// Start registers the Node, starts the certificate manager and the TLS
// listener, and returns without waiting for a certificate.
func Start(ctx context.Context, opts Options) (*Kubelet, error) {
	if opts.Name == "" || opts.Config == nil || len(opts.Addresses) == 0 {
		return nil, errors.New("kubelet: Name, Config and Addresses are required")
	}
	if opts.Port == 0 {
		opts.Port = 10250
	}
	if opts.OSImage == "" {
		opts.OSImage = Debian
	}
	if opts.Version == "" {
		opts.Version = cmp.Or(os.Getenv(VersionEnv), DefaultVersion)
	}
	if _, err := utilversion.ParseGeneric(opts.Version); err != nil {
		return nil, fmt.Errorf("kubelet %s: version: %w", opts.Name, err)
	}
	client, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: client: %w", opts.Name, err)
	}
	k := &Kubelet{name: opts.Name, client: client, port: opts.Port, addresses: opts.Addresses, tmpl: opts.Template}
	if k.tmpl == nil {
		k.tmpl = servingcsr.KubeletTemplate
	}
	ip, err := k.listenIP()
	if err != nil {
		return nil, err
	}
	if !opts.SkipRegistration {
		if err := k.register(ctx, opts); err != nil {
			return nil, err
		}
	}

	cfg := &certificate.Config{
		ClientsetFn:      func(*tls.Certificate) (kubernetes.Interface, error) { return client, nil },
		GetTemplate:      k.template,
		SignerName:       certificatesv1.KubeletServingSignerName,
		GetUsages:        Usages(opts.Version),
		CertificateStore: &memoryStore{},
		Name:             "kubelet-serving-" + opts.Name,
	}
	if opts.Lifetime > 0 {
		cfg.RequestedCertificateLifetime = &opts.Lifetime
	}
	if k.mgr, err = certificate.NewManager(cfg); err != nil {
		return nil, fmt.Errorf("kubelet %s: certificate manager: %w", opts.Name, err)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(opts.Port)))
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: listen: %w", opts.Name, err)
	}
	k.ln = ln
	k.srv = &http.Server{
		Handler: k.handler(),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The kubelet's own GetCertificate: with no certificate the
			// handshake fails and Go's TLS server sends an internal_error alert.
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := k.mgr.Current(); c != nil {
					return c, nil
				}
				return nil, ErrNoServingCertificate
			},
		},
		ErrorLog:          discardLogger(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = k.srv.ServeTLS(ln, "", "") }()
	k.mgr.Start()
	return k, nil
}

// handler answers /metrics/resource with the node metrics metrics-server
// scrapes (a steady 1% of a CPU and 64 MiB), and anything else with "ok".
func (k *Kubelet) handler() http.Handler {
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics/resource", func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		ms := now.UnixMilli()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total %g %d\n", 0.01*now.Sub(start).Seconds(), ms)
		fmt.Fprintf(w, "# TYPE node_memory_working_set_bytes gauge\nnode_memory_working_set_bytes %d %d\n", 64<<20, ms)
		fmt.Fprintf(w, "# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	return mux
}

// register creates the Node as the node itself and writes its status.
func (k *Kubelet) register(ctx context.Context, opts Options) error {
	labels := map[string]string{"kubernetes.io/hostname": opts.Name, "kubernetes.io/os": "linux"}
	maps.Copy(labels, opts.Labels)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: opts.Name, Labels: labels}}
	created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = k.client.CoreV1().Nodes().Get(ctx, opts.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("kubelet %s: register node: %w", opts.Name, err)
	}
	created.Status.Addresses = opts.Addresses
	created.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(opts.Port)
	resources := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("110")}
	created.Status.Capacity, created.Status.Allocatable = resources, resources
	created.Status.NodeInfo = corev1.NodeSystemInfo{
		OSImage: opts.OSImage, KubeletVersion: "v" + strings.TrimPrefix(opts.Version, "v"), OperatingSystem: "linux", Architecture: "amd64",
		ContainerRuntimeVersion: "containerd://2.1.0", KernelVersion: "6.12.0",
	}
	now := metav1.Now()
	created.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "simulated kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubelet %s: update node status: %w", opts.Name, err)
	}
	return nil
}

// template is the kubelet's serving CSR template for the current addresses:
// servingcsr.KubeletTemplate, which mirrors pkg/kubelet/certificate and is
// compared with the real kubelet's CSR by an e2e test.
func (k *Kubelet) template() *x509.CertificateRequest {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tmpl(k.name, k.addresses)
}

func (k *Kubelet) listenIP() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, a := range k.addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address, nil
		}
	}
	return "", fmt.Errorf("kubelet %s: no InternalIP to listen on", k.name)
}

// Name returns the node name.
func (k *Kubelet) Name() string { return k.name }

// Endpoint returns host:port of the kubelet's TLS listener.
func (k *Kubelet) Endpoint() string { return k.ln.Addr().String() }

// Addresses returns the Node's current status.addresses.
func (k *Kubelet) Addresses() []corev1.NodeAddress {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]corev1.NodeAddress(nil), k.addresses...)
}

// Current returns the serving certificate in use, or nil.
func (k *Kubelet) Current() *x509.Certificate {
	if c := k.mgr.Current(); c != nil {
		return c.Leaf
	}
	return nil
}

// SetAddresses writes new status.addresses to the Node, then switches the
// certificate template, as a kubelet does when its addresses change; the
// certificate manager then requests a certificate for the new addresses.
// The listener keeps its original address.
func (k *Kubelet) SetAddresses(ctx context.Context, addrs []corev1.NodeAddress) error {
	node, err := k.client.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kubelet %s: get node: %w", k.name, err)
	}
	node.Status.Addresses = addrs
	if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubelet %s: update addresses: %w", k.name, err)
	}
	k.mu.Lock()
	k.addresses = addrs
	k.mu.Unlock()
	return nil
}

// Rotate asks the certificate manager for a new certificate now, as its
// rotation deadline would, and returns once it has one or ctx ends. It uses
// the manager's own RotateCerts, so the CSR is exactly a rotation's.
func (k *Kubelet) Rotate(ctx context.Context) error {
	r, ok := k.mgr.(interface{ RotateCerts() (bool, error) })
	if !ok {
		return errors.New("certificate manager cannot rotate on demand")
	}
	errc := make(chan error, 1)
	// RotateCerts does not take ctx and may block until its CSR is decided,
	// so it runs apart and Rotate returns when ctx ends. A failed attempt
	// reports false (with an error only in some cases) and is retried after
	// a pause rather than at once.
	go func() {
		errc <- wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			ok, _ := r.RotateCerts()
			return ok, nil
		})
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitForCertificate waits until the kubelet serves a certificate other than
// prev (nil: any certificate) and returns it.
func (k *Kubelet) WaitForCertificate(ctx context.Context, prev *x509.Certificate) (*x509.Certificate, error) {
	var c *x509.Certificate
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		c = k.Current()
		return c != nil && (prev == nil || !c.Equal(prev)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: no new serving certificate: %w", k.name, err)
	}
	return c, nil
}

// Stop stops the certificate manager and the listener.
func (k *Kubelet) Stop() {
	k.mgr.Stop()
	_ = k.srv.Close()
}

// LoopbackPool hands out distinct 127.x.y.z addresses, so each simulated
// kubelet listens on its own IP at the real kubelet port. Each pool picks a
// random second octet so that test packages running in parallel rarely meet.
type LoopbackPool struct {
	mu   sync.Mutex
	base byte
	next int
}

// NewLoopbackPool returns a pool in a random 127.x.0.0/16 (x in 16..239).
func NewLoopbackPool() *LoopbackPool {
	return &LoopbackPool{base: byte(16 + time.Now().UnixNano()%224)}
}

// Next returns the next unused address.
func (p *LoopbackPool) Next() netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	return netip.AddrFrom4([4]byte{127, p.base, byte(p.next / 250), byte(p.next%250 + 1)})
}
