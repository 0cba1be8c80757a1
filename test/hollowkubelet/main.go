//go:build ignore

// Command hollowkubelet runs one real kubelet with a fake container runtime
// (k8s.io/kubernetes/pkg/kubemark's hollow kubelet, shaped like the kubelet
// morph of cmd/kubemark) that asks for its serving certificate the way a
// production kubelet with serverTLSBootstrap: true does.
//
// Unlike kubemark it serves TLS with its own server certificate manager
// (Deps.TLSOptions set), authenticates callers with the client CA and
// TokenReview and authorizes them with SubjectAccessReview (Deps.Auth from
// kubeletapp.BuildAuth), binds only to --node-ip, and keeps all its state
// under --root-dir. Three small fakes make it observable end to end:
//   - every container it "starts" gets one CRI-format log line, so kubectl
//     logs returns content (the stock fake runtime reports no log path);
//   - kubectl exec runs nothing but echoes the command through a real CRI
//     streaming server (the stock fake returns an empty streaming URL);
//   - cAdvisor reports a root container with this process's own CPU time and
//     RSS, so /metrics/resource, metrics-server and kubectl top work (the stock
//     fake returns no containers and every summary fails).
//
// It is not part of csrguard's module (hence the ignore build tag): it imports
// k8s.io/kubernetes, which hack/build-kube.sh builds it against in a tools
// module at K8S_VERSION, and caches by version and by this file's hash. The
// harness runs it through test/realkubelet.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	apitest "k8s.io/cri-api/pkg/apis/testing"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	cadvisortest "k8s.io/kubernetes/pkg/kubelet/cadvisor/testing"
	"k8s.io/kubernetes/pkg/kubelet/cm"
	containertest "k8s.io/kubernetes/pkg/kubelet/container/testing"
	"k8s.io/kubernetes/pkg/kubemark"
)

func main() {
	var kubeconfig, name, nodeIP, rootDir, clientCA string
	var port int
	klog.InitFlags(nil)
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with the node's client certificate (CN system:node:NAME, O system:nodes)")
	flag.StringVar(&name, "name", "", "node name")
	flag.StringVar(&nodeIP, "node-ip", "", "node InternalIPs, comma-separated, one per family; each must be on a local interface; the kubelet listens on the first")
	flag.StringVar(&rootDir, "root-dir", "", "directory for all kubelet state (pki, pods, pod logs, static pods)")
	flag.IntVar(&port, "port", 10250, "kubelet HTTPS port")
	flag.StringVar(&clientCA, "client-ca-file", "", "CA bundle that verifies client certificates (the API server's kubelet client)")
	flag.Parse()
	if kubeconfig == "" || name == "" || nodeIP == "" || rootDir == "" || clientCA == "" {
		fmt.Fprintln(os.Stderr, "hollowkubelet: --kubeconfig, --name, --node-ip, --root-dir and --client-ca-file are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, kubeconfig, name, nodeIP, rootDir, clientCA, port); err != nil {
		klog.ErrorS(err, "hollowkubelet failed")
		os.Exit(1)
	}
	<-ctx.Done()
}

func run(ctx context.Context, kubeconfig, name, nodeIP, rootDir, clientCA string, port int) error {
	rootDir, err := filepath.Abs(rootDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(rootDir, 0o750); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "hollow-kubelet"
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		return err
	}

	// GetHollowKubeletConfig makes empty directories in /tmp (hard-coded);
	// remove them at once and use fixed paths under rootDir instead.
	f, c := kubemark.GetHollowKubeletConfig(&kubemark.HollowKubeletOptions{NodeName: name, KubeletPort: port, MaxPods: 110})
	if err := os.RemoveAll(f.RootDirectory); err != nil {
		return err
	}
	f.RootDirectory = rootDir
	f.CertDirectory = filepath.Join(rootDir, "pki")
	f.NodeIP = nodeIP
	c.StaticPodPath = filepath.Join(rootDir, "static-pods")
	c.PodLogsDir = filepath.Join(rootDir, "pod-logs")
	for _, d := range []string{f.CertDirectory, c.StaticPodPath, c.PodLogsDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	c.Address, _, _ = strings.Cut(nodeIP, ",")
	c.ReadOnlyPort = 0
	c.ServerTLSBootstrap = true
	c.Authentication.Anonymous.Enabled = false
	c.Authentication.X509.ClientCAFile = clientCA
	c.Authentication.Webhook.Enabled = true
	c.Authentication.Webhook.CacheTTL.Duration = 2 * time.Minute
	c.Authorization.Mode = kubeletconfig.KubeletAuthorizationModeWebhook
	c.Authorization.Webhook.CacheAuthorizedTTL.Duration = 5 * time.Minute
	c.Authorization.Webhook.CacheUnauthorizedTTL.Duration = 30 * time.Second

	heartbeatCfg := *cfg
	heartbeatCfg.Timeout = min(c.NodeStatusUpdateFrequency.Duration, time.Duration(c.NodeLeaseDurationSeconds)*time.Second)
	heartbeatCfg.QPS = -1
	heartbeat, err := clientset.NewForConfig(&heartbeatCfg)
	if err != nil {
		return err
	}

	// In-process fakes; kubemark serves the same FakeRuntimeService over a
	// gRPC socket in /tmp, which buys nothing here.
	rt := apitest.NewFakeRuntimeService()
	rt.FakeStatus = &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true}, {Type: runtimeapi.NetworkReady, Status: true},
	}}
	// The kubelet proxies exec to the URL the runtime returns: serve one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sc := streaming.DefaultConfig
	sc.Addr = l.Addr().String()
	streams, err := streaming.NewServer(sc, echoExec{})
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(l, streams) }()
	hk := kubemark.NewHollowKubelet(f, c, client, heartbeat,
		&rootCadvisor{Fake: cadvisortest.Fake{NodeName: name}, start: time.Now()},
		apitest.NewFakeImageService(), &hollowRuntime{RuntimeService: rt, node: name, streams: streams},
		cm.NewStubContainerManager())

	// What cmd/kubelet's run() does and kubemark leaves out: TLS options (nil
	// means plain HTTP and no server certificate manager) and authn/authz
	// (nil means every request is allowed, unauthenticated).
	if hk.KubeletDeps.TLSOptions, err = kubeletapp.InitializeTLS(ctx, f, c); err != nil {
		return err
	}
	auth, runCAReload, err := kubeletapp.BuildAuth(types.NodeName(name), client, *c)
	if err != nil {
		return err
	}
	hk.KubeletDeps.Auth = auth
	// The fake OS cannot stat, so the container log manager would log an
	// error for every container every 10 s.
	hk.KubeletDeps.OSInterface = &containertest.FakeOS{StatFn: os.Stat}
	runCAReload(ctx.Done())
	go hk.Run(ctx) // blocks forever; exits the process on failure
	return nil
}

// hollowRuntime is the fake CRI runtime plus what kubectl logs and exec need:
// the fake drops the log path the kubelet asks for (so logs would find
// nothing) and returns an empty exec URL (so exec would dial "").
type hollowRuntime struct {
	internalapi.RuntimeService
	node    string
	streams streaming.Server
	paths   sync.Map // container ID -> log path
}

func (r *hollowRuntime) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return r.streams.GetExec(req)
}

func (r *hollowRuntime) CreateContainer(ctx context.Context, sandboxID string, cc *runtimeapi.ContainerConfig, sc *runtimeapi.PodSandboxConfig) (string, error) {
	id, err := r.RuntimeService.CreateContainer(ctx, sandboxID, cc, sc)
	if err != nil {
		return id, err
	}
	path := filepath.Join(sc.GetLogDirectory(), cc.GetLogPath())
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return id, err
	}
	line := fmt.Sprintf("%s stdout F hollow container %q of pod %s/%s started on node %s\n", time.Now().UTC().Format(time.RFC3339Nano),
		cc.GetMetadata().GetName(), sc.GetMetadata().GetNamespace(), sc.GetMetadata().GetName(), r.node)
	if err := os.WriteFile(path, []byte(line), 0o640); err != nil {
		return id, err
	}
	r.paths.Store(id, path)
	return id, nil
}

func (r *hollowRuntime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	resp, err := r.RuntimeService.ContainerStatus(ctx, id, verbose)
	if p, ok := r.paths.Load(id); ok && err == nil && resp.GetStatus() != nil {
		resp.Status.LogPath = p.(string)
	}
	return resp, err
}

func (r *hollowRuntime) RemoveContainer(ctx context.Context, id string) error {
	r.paths.Delete(id)
	return r.RuntimeService.RemoveContainer(ctx, id)
}

// echoExec is the streaming runtime: exec prints the command it would run.
type echoExec struct{}

func (echoExec) Exec(_ context.Context, id string, cmd []string, _ io.Reader, out, _ io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	_, err := fmt.Fprintf(out, "hollow exec in container %s: %q\n", id, cmd)
	return err
}

func (echoExec) Attach(context.Context, string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	return errors.New("hollow kubelet: attach is not supported")
}

func (echoExec) PortForward(context.Context, string, int32, io.ReadWriteCloser) error {
	return errors.New("hollow kubelet: port-forward is not supported")
}

// rootCadvisor is cadvisortest.Fake plus a root container "/" whose CPU time
// and memory are this process's own, which is all the kubelet's node summary
// (and so /metrics/resource) needs.
type rootCadvisor struct {
	cadvisortest.Fake
	start time.Time
}

// rootSample is the root container's figures now: the CPU time this process
// has used, its mean rate since start (the "instant" CPU cAdvisor reports)
// and its resident set size. ContainerInfoV2 wraps it in the cAdvisor types of
// the Kubernetes version built against (cadvisor_model.go from v1.37,
// cadvisor_info.go before; hack/build-kube.sh copies the one that compiles).
func (c *rootCadvisor) rootSample() (now time.Time, cpu, cpuRate, rss uint64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu = uint64(ru.Utime.Nano() + ru.Stime.Nano())
	now = time.Now()
	return now, cpu, uint64(float64(cpu) / now.Sub(c.start).Seconds()), selfRSS()
}

// rootMemoryLimit is cadvisortest.Fake's MachineInfo memory capacity.
const rootMemoryLimit = 4026531840

// selfRSS is this process's resident set size in bytes.
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
