// Command localcluster runs csrguard's local control plane for humans:
//
//	localcluster dev  [--nodes N]  a control plane, a real kubelet, N-1 simulated ones and
//	                               metrics-server until Ctrl-C, reachable from this host
//	localcluster demo              the incident and csrguard's fix, told step by step
//
// Both run the components the e2e tests run: etcd, kube-apiserver (verifying
// kubelets with the kubelet-serving CA) and kube-controller-manager, one real
// kubelet (test/realkubelet) beside simulated ones (test/kubelet), and the
// real metrics-server, on addresses from the documentation ranges, so that
// csrguard runs with its production policy. The demo runs in a private network
// namespace; the dev cluster assigns its addresses on this host's loopback
// device (it needs root), so that kubectl and openssl reach it from any shell,
// and removes them when it stops. Where neither is possible they fall back to
// loopback addresses and simulated kubelets, which csrguard approves only with
// its test-only --insecure-test-allow-loopback flag, and say so loudly.
//
// It needs the binaries of hack/build-kube.sh ($CSRGUARD_KUBE_BIN); the
// Makefile's dev-cluster and demo targets set everything up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
	"github.com/csrguard/csrguard/test/netns"
	"github.com/csrguard/csrguard/test/realkubelet"
)

// demoLoopback is set when the demo could not get a network of its own.
var demoLoopback bool

func main() {
	code := 0
	if len(os.Args) > 1 && os.Args[1] == "demo" {
		// The demo tells its story in a network of its own, when it can.
		var parent bool
		var err error
		if code, parent, err = netns.Private(); parent && err == nil {
			os.Exit(code)
		} else if err != nil {
			loopbackWarning(err)
			demoLoopback = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "error:", err)
		code = 1
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: localcluster dev|demo [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "number of kubelets: one real, the others simulated")
	dir := fs.String("dir", "_output/dev", "directory for PKI, data, logs and the kubeconfig")
	osImage := fs.String("os", "talos", `OS image the simulated nodes report: "talos" or "debian"`)
	csrguard := fs.String("csrguard", "_output/bin/csrguard", "csrguard binary (demo)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 200 {
		return fmt.Errorf("--nodes must be between 1 and 200, got %d", *nodes)
	}
	image := kubelet.Talos
	switch *osImage {
	case "talos":
	case "debian":
		image = kubelet.Debian
	default:
		return fmt.Errorf(`--os must be "talos" or "debian", got %q`, *osImage)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	// A fresh cluster each time: stale etcd data from a killed run would
	// otherwise meet fresh PKI.
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	switch args[0] {
	case "dev":
		return dev(ctx, abs, *nodes, image)
	case "demo":
		return demo(ctx, abs, *nodes, image, *csrguard)
	}
	return fmt.Errorf("unknown command %q: want dev or demo", args[0])
}

// node is a real or a simulated kubelet.
type node interface {
	Name() string
	Endpoint() string
	Stop()
}

// local is a running local cluster.
type local struct {
	cp         *controlplane.ControlPlane
	nodes      []node
	kubeconfig string
	// loopback is true in the fallback without real addresses: no real
	// kubelet, no metrics-server, and csrguard needs its test-only flag.
	loopback bool
	// pod runs on the real kubelet, for kubectl logs; "" in loopback mode.
	pod string
	// removeHost removes the addresses assigned on the host.
	removeHost func()
}

// start starts a cluster of n kubelets in dir, on the documentation ranges
// unless loopback. In the host's network (not netns.Inside) it assigns the
// addresses there first.
func start(ctx context.Context, dir string, n int, image string, loopback bool) (*local, error) {
	l := &local{loopback: loopback, removeHost: func() {}}
	pool := netns.NewPool()
	opts := controlplane.Options{Dir: dir, MetricsServer: !loopback}
	var ips []netip.Addr
	if loopback {
		pool = netns.NewPool(netip.MustParsePrefix("127.16.0.0/16"))
	} else {
		for range n {
			ips = append(ips, pool.Next())
		}
		if !netns.Inside() {
			remove, err := netns.Host(append([]netip.Addr{netns.APIServer, netns.MetricsServer}, ips...)...)
			if err != nil {
				return nil, err
			}
			l.removeHost = remove
			opts.BindAddress = netns.APIServer.String()
		}
	}
	step("Starting etcd, kube-apiserver, kube-controller-manager" + map[bool]string{true: "", false: " and metrics-server"}[loopback] + " (built from Go modules)")
	cp, err := controlplane.Start(ctx, opts)
	if err != nil {
		l.stop()
		return nil, err
	}
	l.cp = cp
	l.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := controlplane.WriteKubeconfig(l.kubeconfig, cp.AdminConfig()); err != nil {
		l.stop()
		return nil, err
	}
	// csrguard keeps its records in its namespace, as installed.
	if err := l.createNamespace(ctx, "csrguard"); err != nil {
		l.stop()
		return nil, err
	}
	first := 0
	if !loopback {
		step(fmt.Sprintf("Starting a real kubelet (the kubelet's own code, fake container runtime) and %d simulated ones, all with serving-certificate rotation on", n-1))
		k, err := realkubelet.Start(cp, realkubelet.Options{Name: "real-node-1", IPs: ips[:1], Dir: filepath.Join(dir, "kubelets", "real-node-1")})
		if err != nil {
			l.stop()
			return nil, err
		}
		l.nodes = append(l.nodes, k)
		first = 1
		cs, err := kubernetes.NewForConfig(cp.AdminConfig())
		if err != nil {
			l.stop()
			return nil, err
		}
		if err := realkubelet.RunPod(ctx, cs, "web", k.Name()); err != nil {
			l.stop()
			return nil, err
		}
		l.pod = "web"
	} else {
		step(fmt.Sprintf("Starting %d simulated kubelets with serving-certificate rotation on (%s)", n, image))
	}
	for i := first; i < n; i++ {
		name := fmt.Sprintf("node-%d", i+1)
		if image == kubelet.Talos {
			name = fmt.Sprintf("talos-node-%d", i+1)
		}
		cfg, err := cp.NodeConfig(name)
		if err != nil {
			l.stop()
			return nil, err
		}
		addr := pool.Next()
		if !loopback {
			addr = ips[i]
		}
		k, err := kubelet.Start(ctx, kubelet.Options{Name: name, Config: cfg, Addresses: kubelet.Addresses(name, addr), OSImage: image})
		if err != nil {
			l.stop()
			return nil, err
		}
		l.nodes = append(l.nodes, k)
	}
	return l, nil
}

func (l *local) createNamespace(ctx context.Context, name string) error {
	cs, err := kubernetes.NewForConfig(l.cp.AdminConfig())
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// stop stops everything and removes the host addresses.
func (l *local) stop() {
	for _, n := range l.nodes {
		n.Stop()
	}
	if l.cp != nil {
		_ = l.cp.Stop()
	}
	l.removeHost()
}

func dev(ctx context.Context, dir string, n int, image string) error {
	l, err := start(ctx, dir, n, image, false)
	if err != nil {
		if os.Geteuid() == 0 {
			return err
		}
		loopbackWarning(err)
		if l, err = start(ctx, dir, n, image, true); err != nil {
			return err
		}
	}
	defer l.stop()
	kubectl := filepath.Join(os.Getenv(controlplane.BinDirEnv), "kubectl")
	flag := ""
	if l.loopback {
		flag = " --insecure-test-allow-loopback   # TEST ONLY: loopback node addresses"
	}
	fmt.Printf(`
Local control plane ready: %s, %d kubelets%s.

  export KUBECONFIG=%s
  %s get nodes,csr
  openssl s_client -connect %s </dev/null    # a kubelet, without a certificate yet
  # Run csrguard against it, with its production policy:
  go run ./cmd/csrguard controller --kubeconfig $KUBECONFIG%s
`, l.cp.URL, len(l.nodes), map[bool]string{true: " (simulated, on loopback)", false: " (the first real) and metrics-server"}[l.loopback],
		l.kubeconfig, kubectl, l.nodes[0].Endpoint(), flag)
	if !l.loopback {
		fmt.Printf("  %s logs %s    # through the API server to the real kubelet\n  %s top nodes\n", kubectl, l.pod, kubectl)
	}
	fmt.Printf("\nLogs: %s/logs and %s/kubelets. Press Ctrl-C to stop and clean up.\n", dir, dir)
	<-ctx.Done()
	fmt.Println("\nStopping…")
	return nil
}

// loopbackWarning says, loudly, that the cluster falls back to loopback.
func loopbackWarning(err error) {
	fmt.Fprintf(os.Stderr, `
************************************************************************
WARNING: no private network namespace and no root to assign addresses:
  %v
Falling back to loopback node addresses and simulated kubelets only
(no real kubelet, no metrics-server). csrguard refuses loopback SANs in
production; here it runs with --insecure-test-allow-loopback, a flag for
local test clusters only. Run as root for the real components.
************************************************************************

`, err)
}

func step(msg string) {
	fmt.Printf("%s  ==> %s\n", time.Now().Format("15:04:05"), msg)
}
