// Package controlplane runs a real Kubernetes control plane on loopback for
// csrguard's integration tests, end-to-end tests, demo and benchmark.
//
// Start launches etcd, kube-apiserver and kube-controller-manager, built from
// pinned Go modules by hack/build-kube.sh, on free loopback ports with freshly
// generated PKI: client-certificate authentication, Node and RBAC
// authorization, NodeRestriction admission, and a controller manager that runs
// csrsigning (kubelet-serving certificates signed by a dedicated CA, not the
// cluster CA), csrapproving and csrcleaner. It hands out an admin rest.Config
// and, for any node name, one authenticated with that node's own client
// certificate, so the Node authorizer and NodeRestriction apply exactly as they
// do to kubelets.
//
// Fault tests can restart the API server, kill and restart etcd, compact its
// history, cut every client connection (Options.Proxy) and pause processes
// (faults.go, Process); test/storm injects them in the middle of a CSR storm.
//
// The package owns processes and PKI; simulated kubelets live in
// test/kubelet. Every process started is stopped and waited for by Stop, and
// component logs stay in Options.Dir.
package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/csrguard/csrguard/test/netns"
)

// BinDirEnv names the environment variable that points at the directory holding
// etcd, kube-apiserver and kube-controller-manager (printed by hack/build-kube.sh).
const BinDirEnv = "CSRGUARD_KUBE_BIN"

// Options configures Start. The zero value of every field but Dir is usable.
type Options struct {
	// Dir holds PKI, etcd data and component logs. Required.
	Dir string
	// BinDir holds the binaries; default $CSRGUARD_KUBE_BIN.
	BinDir string
	// ServiceCIDR is the service cluster IP range; default 10.96.0.0/16.
	ServiceCIDR string
	// SigningDuration is kube-controller-manager's --cluster-signing-duration;
	// default 8760h. Short values make kubelets rotate quickly in tests.
	SigningDuration time.Duration
	// Controllers are kube-controller-manager's --controllers; default
	// csrsigning, csrapproving and csrcleaner.
	Controllers []string
	// AdvertiseAddress is the address the API server publishes in the
	// kubernetes Service's EndpointSlice, a real control-plane address that no
	// node may claim: default netns.APIServer (192.0.2.10, TEST-NET-1).
	AdvertiseAddress string
	// BindAddress is where the API server listens: default AdvertiseAddress
	// in a private network namespace (netns.Inside), else 127.0.0.1 (the
	// advertised address then only stands in for one).
	BindAddress string
	// MetricsServer runs metrics-server beside the control plane, registered
	// as the v1beta1.metrics.k8s.io APIService (see startMetricsServer).
	MetricsServer bool
	// APIServerFlags are added to kube-apiserver's flags (a later flag wins).
	APIServerFlags []string
	// Proxy puts a TCP proxy in front of the API server and makes URL (and
	// so every client config handed out) point at it, so that
	// DropConnections can cut every client's connections at once, as a
	// load balancer that restarts does.
	Proxy bool
	// Logf reports progress; default discards.
	Logf func(format string, args ...any)
}

// ControlPlane is a running local control plane.
type ControlPlane struct {
	// URL is the kube-apiserver's https URL.
	URL string
	// ServiceCIDR is the service cluster IP range in use.
	ServiceCIDR netip.Prefix
	// ClusterCAPEM is the CA that signed the API server's certificate and every
	// client certificate; pods would trust it.
	ClusterCAPEM []byte
	// KubeletServingCAPEM is the dedicated CA the signer uses for
	// kubernetes.io/kubelet-serving certificates.
	KubeletServingCAPEM []byte
	// AdvertiseAddress is the API server address published in the kubernetes
	// EndpointSlice (see Options.AdvertiseAddress).
	AdvertiseAddress netip.Addr
	// Dir is Options.Dir; logs are Dir/logs/<component>.log.
	Dir string

	opts     Options
	clientCA *authority
	admin    *rest.Config
	files    *paths

	mu        sync.Mutex
	procs     map[string]*Process
	apiserver []string // argv, kept for RestartAPIServer
	proxy     *proxy   // with Options.Proxy
	stopped   bool
}

// Start brings up etcd, kube-apiserver and kube-controller-manager and returns
// once the API server is ready. On error everything started is stopped.
func Start(ctx context.Context, opts Options) (cp *ControlPlane, err error) {
	if opts.Dir == "" {
		return nil, errors.New("controlplane: Options.Dir is required")
	}
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv(BinDirEnv)
	}
	if opts.BinDir == "" {
		return nil, fmt.Errorf("controlplane: no binaries: set %s (run hack/build-kube.sh, or make test)", BinDirEnv)
	}
	bins := []string{"etcd", "kube-apiserver", "kube-controller-manager"}
	if opts.MetricsServer {
		bins = append(bins, "metrics-server")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("controlplane: %s missing in %s=%s: %w", b, BinDirEnv, opts.BinDir, err)
		}
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/16"
	}
	svc, err := netip.ParsePrefix(opts.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("controlplane: service CIDR: %w", err)
	}
	if opts.SigningDuration == 0 {
		opts.SigningDuration = 8760 * time.Hour
	}
	if len(opts.Controllers) == 0 {
		opts.Controllers = []string{"csrsigning", "csrapproving", "csrcleaner"}
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.AdvertiseAddress == "" {
		opts.AdvertiseAddress = netns.APIServer.String()
	}
	if opts.BindAddress == "" {
		opts.BindAddress = "127.0.0.1"
		if netns.Inside() {
			opts.BindAddress = opts.AdvertiseAddress
		}
	}
	for _, d := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}

	adv, err := netip.ParseAddr(opts.AdvertiseAddress)
	if err != nil {
		return nil, fmt.Errorf("controlplane: advertise address: %w", err)
	}
	c := &ControlPlane{Dir: opts.Dir, opts: opts, ServiceCIDR: svc, AdvertiseAddress: adv, procs: map[string]*Process{}}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	cp = c

	p, err := cp.writePKI()
	if err != nil {
		return nil, err
	}
	if err := cp.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := cp.startAPIServer(ctx, p); err != nil {
		return nil, err
	}
	if err := cp.startControllerManager(ctx, p); err != nil {
		return nil, err
	}
	if err := cp.publishEndpoints(ctx); err != nil {
		return nil, err
	}
	if err := cp.bindKubeletClient(ctx); err != nil {
		return nil, err
	}
	if opts.MetricsServer {
		if err := cp.startMetricsServer(ctx); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// kubeletClientUser is the API server's user name at kubelets.
const kubeletClientUser = "kube-apiserver-kubelet-client"

// bindKubeletClient lets the API server's kubelet client use the kubelet API
// (logs, exec, proxy), as kubeadm and Talos set up.
func (cp *ControlPlane) bindKubeletClient(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: kubeletClientUser},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: kubeletClientUser}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("bind %s to system:kubelet-api-admin: %w", kubeletClientUser, err)
	}
	return nil
}

// ClusterCAFile is the cluster CA's certificate file: what kubelets verify
// client certificates with.
func (cp *ControlPlane) ClusterCAFile() string { return cp.files.clusterCA }

// KubeletServingCAFile is the kubelet-serving CA's certificate file.
func (cp *ControlPlane) KubeletServingCAFile() string { return cp.files.servingCA }

// paths are the files written by writePKI.
type paths struct {
	clusterCA, apiserverCert, apiserverKey string
	clusterCAKey                           string
	servingCA, servingCAKey                string
	saPriv, saPub                          string
	// kubeletClientCert/Key is how the API server authenticates to kubelets.
	kubeletClientCert, kubeletClientKey string
	// frontProxyCA and frontProxyClient* authenticate the aggregator to
	// extension API servers (metrics-server).
	frontProxyCA, frontProxyClientCert, frontProxyClientKey string
}

func (cp *ControlPlane) writePKI() (*paths, error) {
	dir := filepath.Join(cp.Dir, "pki")
	clusterCA, err := newAuthority("csrguard-local-cluster-ca")
	if err != nil {
		return nil, err
	}
	servingCA, err := newAuthority("csrguard-local-kubelet-serving-ca")
	if err != nil {
		return nil, err
	}
	cp.clientCA = clusterCA
	cp.ClusterCAPEM = clusterCA.certPEM
	cp.KubeletServingCAPEM = servingCA.certPEM

	p := &paths{}
	if p.clusterCA, p.clusterCAKey, err = clusterCA.writeFiles(dir, "cluster-ca"); err != nil {
		return nil, err
	}
	if p.servingCA, p.servingCAKey, err = servingCA.writeFiles(dir, "kubelet-serving-ca"); err != nil {
		return nil, err
	}
	first := firstIP(cp.ServiceCIDR)
	certPEM, keyPEM, err := clusterCA.issue(leaf{
		cn:    "kube-apiserver",
		dns:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		ips:   []net.IP{net.ParseIP("127.0.0.1"), net.IP(cp.AdvertiseAddress.AsSlice()), net.IP(first.AsSlice())},
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	if p.apiserverCert, p.apiserverKey, err = writePair(dir, "apiserver", certPEM, keyPEM); err != nil {
		return nil, err
	}
	if p.saPriv, p.saPub, err = writeRSAKey(dir, "service-account"); err != nil {
		return nil, err
	}
	// The API server's client certificate to kubelets; RBAC binds its user to
	// system:kubelet-api-admin, which kubelets' webhook authorizer checks.
	certPEM, keyPEM, err = clusterCA.issue(leaf{cn: kubeletClientUser, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, err
	}
	if p.kubeletClientCert, p.kubeletClientKey, err = writePair(dir, "apiserver-kubelet-client", certPEM, keyPEM); err != nil {
		return nil, err
	}
	frontProxyCA, err := newAuthority("csrguard-local-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	if p.frontProxyCA, _, err = frontProxyCA.writeFiles(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err = frontProxyCA.issue(leaf{cn: "front-proxy-client", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, err
	}
	if p.frontProxyClientCert, p.frontProxyClientKey, err = writePair(dir, "front-proxy-client", certPEM, keyPEM); err != nil {
		return nil, err
	}
	cp.files = p
	cp.admin, err = cp.UserConfig("csrguard-admin", "system:masters")
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	client, peer := freePort(), freePort()
	clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	args := []string{
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync", // test data: durability is not the point, speed is
		"--log-level=warn",
	}
	if err := cp.spawn("etcd", args); err != nil {
		return err
	}
	cp.opts.Logf("etcd listening on %s", clientURL)
	return cp.waitHTTP(ctx, "etcd", clientURL+"/health", nil)
}

func (cp *ControlPlane) etcdURL() string {
	for _, a := range cp.procs["etcd"].args {
		if v, ok := strings.CutPrefix(a, "--listen-client-urls="); ok {
			return v
		}
	}
	return ""
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, p *paths) error {
	port := freePort()
	cp.URL = "https://" + net.JoinHostPort(cp.opts.BindAddress, strconv.Itoa(port))
	if cp.opts.Proxy {
		px, err := startProxy(net.JoinHostPort(cp.opts.BindAddress, "0"), net.JoinHostPort(cp.opts.BindAddress, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		cp.proxy = px
		cp.URL = "https://" + px.addr()
	}
	cp.admin.Host = cp.URL
	args := []string{
		"--etcd-servers=" + cp.etcdURL(),
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=" + cp.opts.BindAddress,
		"--advertise-address=" + cp.AdvertiseAddress.String(),
		// With nothing listening on the advertised address the endpoint
		// reconciler must be off; Start publishes the kubernetes EndpointSlice
		// itself (publishEndpoints).
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + p.apiserverCert,
		"--tls-private-key-file=" + p.apiserverKey,
		"--client-ca-file=" + p.clusterCA,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saPriv,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range=" + cp.ServiceCIDR.String(),
		// The API server verifies kubelets with the kubelet-serving CA, as the
		// incident's clusters should: logs, exec and proxy fail exactly while a
		// kubelet has no certificate from it.
		"--kubelet-certificate-authority=" + p.servingCA,
		"--kubelet-client-certificate=" + p.kubeletClientCert,
		"--kubelet-client-key=" + p.kubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP",
		// The aggregation layer, for metrics-server; with no kube-proxy, the
		// aggregator dials the endpoints of a Service itself.
		"--requestheader-client-ca-file=" + p.frontProxyCA,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.frontProxyClientCert,
		"--proxy-client-key-file=" + p.frontProxyClientKey,
		"--enable-aggregator-routing=true",
		// Benchmarks create thousands of objects from many clients at once.
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
		"--profiling=false",
	}
	args = append(args, cp.opts.APIServerFlags...)
	cp.apiserver = args
	if err := cp.spawn("kube-apiserver", args); err != nil {
		return err
	}
	cp.opts.Logf("kube-apiserver starting on %s", cp.URL)
	return cp.waitAPIServer(ctx)
}

func (cp *ControlPlane) waitAPIServer(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	return cp.poll(ctx, "kube-apiserver", 90*time.Second, func(ctx context.Context) error {
		return cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
}

func (cp *ControlPlane) startControllerManager(ctx context.Context, p *paths) error {
	kubeconfig := filepath.Join(cp.Dir, "pki", "kube-controller-manager.kubeconfig")
	if err := WriteKubeconfig(kubeconfig, cp.admin); err != nil {
		return err
	}
	port := freePort()
	signer := func(name, cert, key string) []string {
		return []string{"--cluster-signing-" + name + "-cert-file=" + cert, "--cluster-signing-" + name + "-key-file=" + key}
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(cp.opts.Controllers, ","),
		"--cluster-signing-duration=" + cp.opts.SigningDuration.String(),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
	}
	// Kubelet serving certificates get their own CA, as csrguard recommends:
	// a certificate that pods trust must never be issued on a node's say-so.
	args = append(args, signer("kubelet-serving", p.servingCA, p.servingCAKey)...)
	for _, s := range []string{"kubelet-client", "kube-apiserver-client", "legacy-unknown"} {
		args = append(args, signer(s, p.clusterCA, p.clusterCAKey)...)
	}
	if err := cp.spawn("kube-controller-manager", args); err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed local health endpoint
	return cp.waitHTTP(ctx, "kube-controller-manager", "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz", insecure)
}

// publishEndpoints writes the kubernetes Service's EndpointSlice, which the
// disabled endpoint reconciler would otherwise own, so that tools discovering
// the API server's addresses see them as in a real cluster.
func (cp *ControlPlane) publishEndpoints(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(cp.URL[strings.LastIndex(cp.URL, ":")+1:])
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "kubernetes",
			Namespace: metav1.NamespaceDefault,
			Labels:    map[string]string{discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: "csrguard-local-controlplane"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{cp.AdvertiseAddress.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	// The default namespace may appear a moment after readyz.
	return cp.poll(ctx, "kubernetes EndpointSlice", 30*time.Second, func(ctx context.Context) error {
		_, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Create(ctx, slice, metav1.CreateOptions{})
		return err
	})
}

// AdminConfig returns a fresh rest.Config for a cluster administrator
// (group system:masters).
func (cp *ControlPlane) AdminConfig() *rest.Config { return rest.CopyConfig(cp.admin) }

// NodeConfig returns a rest.Config authenticated as node name with a client
// certificate (CN system:node:<name>, O system:nodes) issued by the cluster CA.
func (cp *ControlPlane) NodeConfig(name string) (*rest.Config, error) {
	return cp.UserConfig("system:node:"+name, "system:nodes")
}

// UserConfig returns a rest.Config authenticated with a client certificate for
// user and groups.
func (cp *ControlPlane) UserConfig(user string, groups ...string) (*rest.Config, error) {
	certPEM, keyPEM, err := cp.clientCA.issue(leaf{cn: user, orgs: groups, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            cp.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.ClusterCAPEM, CertData: certPEM, KeyData: keyPEM},
		QPS:             200,
		Burst:           400,
	}, nil
}

// WriteKubeconfig writes cfg (certificate or token based) as a kubeconfig file.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user"}
	kc.CurrentContext = "local"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*kc, path)
}

// Kubectl runs the kubectl built with the control plane as an administrator
// and returns its combined output.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (string, error) {
	kubeconfig := filepath.Join(cp.Dir, "admin.kubeconfig")
	if _, err := os.Stat(kubeconfig); err != nil {
		if err := WriteKubeconfig(kubeconfig, cp.AdminConfig()); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(cp.opts.BinDir, "kubectl"), append([]string{"--kubeconfig=" + kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// RestartAPIServer stops kube-apiserver and starts it again with the same
// flags and port, returning once it is ready. Fault tests use it.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	p := cp.procs["kube-apiserver"]
	cp.mu.Unlock()
	if p != nil {
		_ = p.Stop()
	}
	if err := cp.spawn("kube-apiserver", cp.apiserver); err != nil {
		return err
	}
	return cp.waitAPIServer(ctx)
}

// StopControllerManager stops kube-controller-manager, so approved CSRs stay
// unissued, as with a signer that is not running.
func (cp *ControlPlane) StopControllerManager() {
	cp.mu.Lock()
	p := cp.procs["kube-controller-manager"]
	delete(cp.procs, "kube-controller-manager")
	cp.mu.Unlock()
	if p != nil {
		_ = p.Stop()
	}
}

// PID returns the process ID of a running component ("kube-apiserver",
// "etcd", …), or 0 if it is not running; benchmarks read its /proc entry.
func (cp *ControlPlane) PID(component string) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if p := cp.procs[component]; p != nil && !p.Exited() {
		return p.Pid()
	}
	return 0
}

// LogFile returns the path of a component's log.
func (cp *ControlPlane) LogFile(component string) string {
	return filepath.Join(cp.Dir, "logs", component+".log")
}

// Stop stops every component in reverse start order and waits for them.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.stopped {
		return nil
	}
	cp.stopped = true
	var errs []error
	for _, name := range []string{"metrics-server", "kube-controller-manager", "kube-apiserver", "etcd"} {
		if p := cp.procs[name]; p != nil {
			errs = append(errs, p.Stop())
		}
	}
	if cp.proxy != nil {
		cp.proxy.close()
	}
	return errors.Join(errs...)
}

func (cp *ControlPlane) spawn(name string, args []string) error {
	p, err := StartProcess(filepath.Join(cp.opts.BinDir, name), args, cp.LogFile(name))
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	cp.mu.Lock()
	cp.procs[name] = p
	cp.mu.Unlock()
	return nil
}

func (cp *ControlPlane) waitHTTP(ctx context.Context, name, url string, c *http.Client) error {
	if c == nil {
		c = http.DefaultClient
	}
	return cp.poll(ctx, name, 60*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// poll calls f until it succeeds, the component named name exits, or timeout.
func (cp *ControlPlane) poll(ctx context.Context, name string, timeout time.Duration, f func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		last = f(attempt)
		cancelAttempt()
		if last == nil {
			return true, nil
		}
		cp.mu.Lock()
		p := cp.procs[name]
		cp.mu.Unlock()
		if p != nil && p.Exited() {
			// No use waiting for a component that is gone.
			return false, fmt.Errorf("%s exited: %w; log tail:\n%s", name, p.Err(), Tail(cp.LogFile(name), 30))
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("%s not ready after %s: %w (last error: %w)", name, timeout, err, last)
	}
	return err
}

// Tail returns the last n lines of a file, for failure reports.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func firstIP(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }
