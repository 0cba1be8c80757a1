package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/storm"
)

// maxNodes is how many unique node addresses nodeAddr can hand out.
const maxNodes = 127<<16 - 1

// node is one simulated node: its own client, and the CSR it will file.
type node struct {
	name   string
	client kubernetes.Interface
	csr    *certificatesv1.CertificateSigningRequest
}

// result is what one approver's run measured.
type result struct {
	approver         string
	approved, denied int
	// burst is from the first CSR create to the last create returning;
	// total is from the first create to the last approval seen.
	burst, total time.Duration
	p50, p99     time.Duration
	// reads are GET requests (lists and watches included: client-go labels
	// requests by HTTP method), writes POST/PUT/PATCH/DELETE, both made by
	// the approver during the burst.
	reads, writes float64
	peakRSSMB     float64
	cpu           time.Duration
	// throttled counts the approver's requests answered 429 during the
	// burst (Priority and Fairness rejecting them), retries included.
	throttled float64
	// server is what the API server spent and how fast it answered, from
	// the first create to the last approval.
	server apiserverCost
}

// drain is how long after the last create returned the last approval came.
func (r result) drain() time.Duration { return r.total - r.burst }

// benchApprover runs one approver against a fresh control plane. It returns
// a result whenever the burst was created, even if not everything was
// approved, so the table shows how far the approver got.
func benchApprover(ctx context.Context, o options, approver string) (*result, error) {
	dir := filepath.Join(o.dir, approver)
	// Fresh every time: etcd data from an earlier run would meet fresh PKI.
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	start := time.Now()
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	defer func() { _ = cp.Stop() }()
	fmt.Printf("control plane ready in %s (logs in %s)\n", time.Since(start).Round(100*time.Millisecond), filepath.Join(dir, "logs"))

	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return nil, err
	}
	nodes, err := registerNodes(ctx, cp, o.n, o.clients, nodeAddr)
	if err != nil {
		return nil, err
	}
	defer closeIdle(nodes)

	if o.throttle {
		if err := cp.Throttle(ctx, approverUser, throttleQueueLength); err != nil {
			return nil, err
		}
	}
	proc, ep, err := startApprover(ctx, cp, o, approver, dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = proc.Stop() }()

	w, err := watchApprovals(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer w.stop()

	before, err := scrapeMetrics(ctx, ep.metrics)
	if err != nil {
		return nil, fmt.Errorf("scrape %s metrics before the burst: %w", approver, err)
	}
	serverBefore, err := sampleAPIServer(ctx, cp, admin, true)
	if err != nil {
		return nil, err
	}

	burstStart := time.Now()
	created, burstEnd, err := createCSRs(ctx, nodes, o.clients)
	if err != nil {
		return nil, err
	}
	burst := burstEnd.Sub(burstStart)
	fmt.Printf("created %d CSRs in %s\n", len(nodes), burst.Round(10*time.Millisecond))

	waitErr := w.waitApproved(ctx, len(nodes), o.timeout, proc)
	serverAfter, err := sampleAPIServer(ctx, cp, admin, false)
	if err != nil {
		return nil, err
	}
	if ep.pprof != "" {
		// What is in csrguard's heap with N Nodes and N CSRs cached, for
		// `go tool pprof` should the RSS per node grow.
		if err := saveProfile(ctx, ep.pprof+"/heap", filepath.Join(dir, "heap.pprof")); err != nil {
			return nil, err
		}
	}

	// Read the approver's counters before stopping it: its /metrics and
	// /proc entry go with it.
	after, err := scrapeMetrics(ctx, ep.metrics)
	if err != nil {
		return nil, fmt.Errorf("scrape %s metrics after the burst: %w", approver, err)
	}
	usage, err := readProcUsage(proc.Pid())
	if err != nil {
		return nil, fmt.Errorf("read %s resource usage: %w", approver, err)
	}
	_ = proc.Stop()

	// The server's view, not the watch's, decides approved and denied.
	approved, denied, err := countFinal(ctx, admin)
	if err != nil {
		return nil, err
	}
	r := &result{
		approver: approver, approved: approved, denied: denied, burst: burst,
		peakRSSMB: usage.peakRSSMB, cpu: usage.cpu,
		throttled: after.throttled - before.throttled,
		server:    serverAfter.since(serverBefore),
	}
	r.total, r.p50, r.p99 = w.latencies(burstStart, created)
	if err := w.writeCSV(filepath.Join(dir, "csrs.csv"), burstStart, created); err != nil {
		return nil, err
	}
	reads, writes := after.requests.sub(before.requests)
	fmt.Printf("%s during the burst: API requests %s (%.0f answered 429); mean wait in workqueue %s, mean reconcile %s\n", approver,
		after.requests.delta(before.requests), r.throttled,
		after.queued.meanSince(before.queued).Round(100*time.Microsecond),
		after.reconcile.meanSince(before.reconcile).Round(100*time.Microsecond))
	fmt.Printf("kube-apiserver meanwhile: CPU %s; approval writes p50 %s, p99 %s, mean %s; other requests p50 %s, p99 %s; %.0f rejected by Priority and Fairness\n",
		secs(r.server.cpu), ms(r.server.approvals.quantile(0.5)), ms(r.server.approvals.quantile(0.99)), ms(r.server.approvals.mean()),
		ms(r.server.others.quantile(0.5)), ms(r.server.others.quantile(0.99)), r.server.rejected)
	if approved > 0 {
		r.reads, r.writes = reads/float64(approved), writes/float64(approved)
	}
	if waitErr != nil {
		return r, fmt.Errorf("%w; approver log: %s", waitErr, filepath.Join(dir, "logs", approver+".log"))
	}
	return r, nil
}

// nodeAddr is node i's InternalIP: unique, inside 10.128.0.0/9 and so clear of
// the control plane's service CIDR (10.96.0.0/16), and never 10.128.0.0 itself.
func nodeAddr(i int) netip.Addr {
	v := i + 1
	return netip.AddrFrom4([4]byte{10, byte(128 + v>>16), byte(v >> 8), byte(v)})
}

// nodeName is node i's name, in both phases.
func nodeName(i int) string { return fmt.Sprintf("node-%05d", i) }

// registerNodes creates n Nodes, each as the node itself with a client
// certificate (as kubelets register), with InternalIP addr(i), a Hostname and
// kubelet port 10250, and prepares each node's serving CSR for exactly those
// addresses. This part is set-up, not measured.
func registerNodes(ctx context.Context, cp *controlplane.ControlPlane, n, clients int, addr func(int) netip.Addr) ([]*node, error) {
	nodes := make([]*node, n)
	var done atomic.Int64
	stop := progress("nodes registered", &done, n)
	defer stop()
	err := storm.Parallel(ctx, n, clients, func(ctx context.Context, i int) error {
		name := nodeName(i)
		cfg, err := cp.NodeConfig(name)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		addrs := []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: addr(i).String()},
			{Type: corev1.NodeHostName, Address: name},
		}
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		created, err := cs.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
		created.Status.Addresses = addrs
		created.Status.DaemonEndpoints.KubeletEndpoint.Port = kubeletPort
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update node %s status: %w", name, err)
		}
		csr, err := servingCSR(name, addr(i))
		if err != nil {
			return err
		}
		nodes[i] = &node{name: name, client: cs, csr: csr}
		done.Add(1)
		return nil
	})
	return nodes, err
}

// saveProfile writes the Go profile served at url to path.
func saveProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	return os.WriteFile(path, b, 0o600)
}

// closeIdle closes the idle API server connections of the nodes' clients, which
// are not used again: one descriptor per node, here and in the API server.
// client-go wraps the transport in round trippers that do not pass
// http.Client.CloseIdleConnections on; utilnet unwraps them. (With the plain
// call nothing was closed, and a bench of both sizes ran out of descriptors
// in its 10,000-node probe phase.)
func closeIdle(nodes []*node) {
	for _, n := range nodes {
		if rc, ok := n.client.CoreV1().RESTClient().(*rest.RESTClient); ok && rc.Client != nil {
			utilnet.CloseIdleConnectionsFor(rc.Client.Transport)
		}
	}
}

// servingCSR is the CSR a kubelet files for its serving certificate: ECDSA
// P-256, CN system:node:NAME, O system:nodes, its Hostname as DNS SAN and its
// InternalIP as IP SAN, usages digital signature and server auth.
func servingCSR(name string, ip netip.Addr) (*certificatesv1.CertificateSigningRequest, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
		DNSNames:    []string{name},
		IPAddresses: []net.IP{net.IP(ip.AsSlice())},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %s: %w", name, err)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-serving"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, nil
}

// The approvers of the approval phase.
const (
	// csrguardDefaults is csrguard with its default flags, as installed.
	csrguardDefaults = "csrguard"
	// csrguardUnlimited is csrguard with its client-side rate limit off
	// (--kube-api-qps=-1), as the ceiling runs; since #13 that is also its
	// default.
	csrguardUnlimited = "csrguard-unlimited"
	// csrguardCapped is csrguard with the client-side rate limit it had
	// before #13 (--kube-api-qps=300 --kube-api-burst=600): what such a cap
	// costs the approvals and spares the API server.
	csrguardCapped = "csrguard-capped"
	// nocheck is the ceiling: test/cmd/nocheck-approver, which checks
	// nothing and has no client-side rate limit.
	nocheck = "nocheck"
)

// csrguardVariants are the csrguard approvers, in the order tables show them.
var csrguardVariants = []string{csrguardDefaults, csrguardCapped, csrguardUnlimited}

// variantFlags are the flags each csrguard variant adds to its defaults.
var variantFlags = map[string][]string{
	csrguardUnlimited: {"--kube-api-qps=-1"},
	csrguardCapped:    {"--kube-api-qps=300", "--kube-api-burst=600"},
}

// approverUser and approverGroups are who every approver runs as: a
// ServiceAccount, as csrguard runs in a cluster, so that the API server's
// Priority and Fairness classifies their requests as it would there (the
// FlowSchema service-accounts, priority level workload-low). An
// administrator (system:masters) would be exempt from it. The user is bound
// to cluster-admin: the bench measures speed; the packaging tests check the
// chart's RBAC.
const approverUser = "system:serviceaccount:csrguard:csrguard"

var approverGroups = []string{"system:serviceaccounts", "system:serviceaccounts:csrguard"}

// approverConfig creates csrguard's namespace and binds approverUser to
// cluster-admin, once per control plane, and returns a client configuration authenticated as it.
func approverConfig(ctx context.Context, cp *controlplane.ControlPlane) (*rest.Config, error) {
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return nil, err
	}
	// csrguard's own namespace, as an install has it: its address-claims
	// ConfigMaps are written there (without it each save fails and is retried).
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "csrguard"}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace csrguard: %w", err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-approver"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: approverUser}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("bind %s to cluster-admin: %w", approverUser, err)
	}
	return cp.UserConfig(approverUser, approverGroups...)
}

// endpoints are where an approver serves metrics and health, and csrguard
// its Go profiles.
type endpoints struct{ metrics, readyz, pprof string }

// startApprover starts the approver as approverUser, with extra flags after
// the common ones, and returns once its /readyz says its caches are synced.
func startApprover(ctx context.Context, cp *controlplane.ControlPlane, o options, approver, dir string, extra ...string) (*controlplane.Process, endpoints, error) {
	cfg, err := approverConfig(ctx, cp)
	if err != nil {
		return nil, endpoints{}, err
	}
	kubeconfig := filepath.Join(dir, "approver.kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, cfg); err != nil {
		return nil, endpoints{}, err
	}
	metricsAddr, healthAddr := freeAddr(), freeAddr()
	ep := endpoints{metrics: "http://" + metricsAddr + "/metrics", readyz: "http://" + healthAddr + "/readyz"}
	common := []string{
		"--kubeconfig=" + kubeconfig,
		"--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + healthAddr,
		"--workers=" + strconv.Itoa(o.workers),
	}
	bin, args := o.nocheck, common
	switch approver {
	case csrguardDefaults, csrguardUnlimited, csrguardCapped:
		// Default policy and limits: the benchmark's nodes have routable,
		// unique addresses, so nothing needs loosening.
		// Probing is measured in its own phase; here it would only add
		// handshakes to addresses nothing listens on.
		bin, args = o.csrguard, append([]string{"controller", "--leader-elect=false", "--probe-interval=0"}, common...)
		args = append(args, variantFlags[approver]...)
		pprofAddr := freeAddr()
		ep.pprof = "http://" + pprofAddr + "/debug/pprof"
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	args = append(args, extra...)
	logPath := filepath.Join(dir, "logs", approver+".log")
	proc, err := controlplane.StartProcess(bin, args, logPath)
	if err != nil {
		return nil, endpoints{}, fmt.Errorf("start %s: %w", approver, err)
	}
	start := time.Now()
	err = poll(ctx, 2*time.Minute, func() (bool, error) {
		if proc.Exited() {
			return false, fmt.Errorf("%s exited: %w; log tail:\n%s", approver, proc.Err(), controlplane.Tail(logPath, 20))
		}
		resp, err := http.Get(ep.readyz) //nolint:noctx // bounded by the poll deadline and a local listener
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		_ = proc.Stop()
		return nil, endpoints{}, fmt.Errorf("%s not ready: %w", approver, err)
	}
	fmt.Printf("%s ready in %s (pid %d, log %s)\n", approver, time.Since(start).Round(10*time.Millisecond), proc.Pid(), logPath)
	return proc, ep, nil
}

// createCSRs files every node's CSR with that node's own client from
// clients goroutines at once, and returns when each create returned and when
// the last did.
func createCSRs(ctx context.Context, nodes []*node, clients int) (map[string]time.Time, time.Time, error) {
	created := make([]time.Time, len(nodes))
	var done atomic.Int64
	stop := progress("CSRs created", &done, len(nodes))
	err := storm.Parallel(ctx, len(nodes), clients, func(ctx context.Context, i int) error {
		n := nodes[i]
		if _, err := n.client.CertificatesV1().CertificateSigningRequests().Create(ctx, n.csr, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create CSR as %s: %w", n.name, err)
		}
		created[i] = time.Now()
		done.Add(1)
		return nil
	})
	stop()
	byName := make(map[string]time.Time, len(nodes))
	var last time.Time
	for i, t := range created {
		byName[nodes[i].csr.Name] = t
		if t.After(last) {
			last = t
		}
	}
	return byName, last, err
}

// approvalWatch records, per CSR, when this program first saw it Approved or
// Denied. It watches as an administrator on its own connection, so what it
// measures is when the approval became visible to any client, not when the
// approver believed it wrote it.
type approvalWatch struct {
	factory informers.SharedInformerFactory
	cancel  context.CancelFunc

	mu       sync.Mutex
	approved map[string]time.Time
	denied   map[string]time.Time
}

func watchApprovals(ctx context.Context, admin kubernetes.Interface) (*approvalWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &approvalWatch{cancel: cancel, approved: map[string]time.Time{}, denied: map[string]time.Time{}}
	w.factory = informers.NewSharedInformerFactoryWithOptions(admin, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String()
	}))
	inf := w.factory.Certificates().V1().CertificateSigningRequests().Informer()
	record := func(obj any) {
		csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
		if !ok {
			return
		}
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, c := range csr.Status.Conditions {
			var seen map[string]time.Time
			switch c.Type {
			case certificatesv1.CertificateApproved:
				seen = w.approved
			case certificatesv1.CertificateDenied:
				seen = w.denied
			default:
				continue
			}
			if _, ok := seen[csr.Name]; !ok {
				seen[csr.Name] = now
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		cancel()
		return nil, err
	}
	w.factory.Start(ctx.Done())
	for typ, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("watch %v: cache not synced", typ)
		}
	}
	return w, nil
}

func (w *approvalWatch) stop() {
	w.cancel()
	w.factory.Shutdown()
}

func (w *approvalWatch) counts() (approved, denied int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.approved), len(w.denied)
}

// waitApproved waits until n CSRs have been seen approved, failing early if
// the approver exits or every CSR is final with some denied.
func (w *approvalWatch) waitApproved(ctx context.Context, n int, timeout time.Duration, proc *controlplane.Process) error {
	var approved atomic.Int64
	stop := progress("CSRs approved", &approved, n)
	defer stop()
	return poll(ctx, timeout, func() (bool, error) {
		a, d := w.counts()
		approved.Store(int64(a))
		switch {
		case a >= n:
			return true, nil
		case a+d >= n:
			return false, fmt.Errorf("%d of %d CSRs denied", d, n)
		case proc.Exited():
			return false, fmt.Errorf("approver exited after %d of %d approvals: %w", a, n, proc.Err())
		}
		return false, nil
	})
}

// latencies returns the time from start to the last approval seen, and the
// median and 99th percentile of approval seen − create returned.
func (w *approvalWatch) latencies(start time.Time, created map[string]time.Time) (total, p50, p99 time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lat []time.Duration
	for name, t := range w.approved {
		c, ok := created[name]
		if !ok || c.IsZero() {
			continue
		}
		total = max(total, t.Sub(start))
		// On a saturated machine the watch event can be handled before the
		// create call returns; such a CSR counts as approved at once.
		lat = append(lat, max(0, t.Sub(c)))
	}
	return total, percentile(lat, 0.50), percentile(lat, 0.99)
}

// writeCSV writes, per CSR, when its create returned and when it was seen
// approved, in milliseconds after the burst started, so a surprising
// percentile can be traced to the CSRs behind it.
func (w *approvalWatch) writeCSV(path string, start time.Time, created map[string]time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	b.WriteString("csr,created_ms,approved_ms\n")
	offset := func(t time.Time, ok bool) string {
		if !ok || t.IsZero() {
			return ""
		}
		return strconv.FormatInt(t.Sub(start).Milliseconds(), 10)
	}
	for _, name := range slices.Sorted(maps.Keys(created)) {
		c := created[name]
		a, ok := w.approved[name]
		fmt.Fprintf(&b, "%s,%s,%s\n", name, offset(c, true), offset(a, ok))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// countFinal counts approved and denied kubelet-serving CSRs on the server.
func countFinal(ctx context.Context, admin kubernetes.Interface) (approved, denied int, err error) {
	list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String(),
	})
	if err != nil {
		return 0, 0, fmt.Errorf("list CSRs: %w", err)
	}
	for _, csr := range list.Items {
		for _, c := range csr.Status.Conditions {
			switch c.Type {
			case certificatesv1.CertificateApproved:
				approved++
			case certificatesv1.CertificateDenied:
				denied++
			}
		}
	}
	return approved, denied, nil
}

// poll calls cond every 50 ms until it reports done or an error, or timeout.
// The short interval matters: it bounds how late readiness is noticed.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	return pollEvery(ctx, 50*time.Millisecond, timeout, cond)
}

// pollEvery is poll with another interval, for conditions that cost the
// process measured something to check.
func pollEvery(ctx context.Context, every, timeout time.Duration, cond func() (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, every, timeout, true, func(context.Context) (bool, error) { return cond() })
	if wait.Interrupted(err) {
		return fmt.Errorf("not done after %s: %w", timeout, err)
	}
	return err
}

// progress prints "<label> k/n" every two seconds until stopped, and once
// more when stopped, so long phases show they are moving.
func progress(label string, done *atomic.Int64, n int) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fmt.Printf("  %s %d/%d\n", label, done.Load(), n)
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		fmt.Printf("  %s %d/%d\n", label, done.Load(), n)
	}
}

// freeAddr returns a loopback address with a port free at the time of asking.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer l.Close()
	return l.Addr().String()
}
