// Package realkubelet runs the kubelet's own code for csrguard's tests, demo
// and dev cluster: test/hollowkubelet, kubemark's hollow kubelet with a fake
// container runtime, built from the pinned k8s.io/kubernetes by
// hack/build-kube.sh. Unlike the simulated kubelets of test/kubelet it is the
// real thing: its own serving certificate manager with serverTLSBootstrap,
// its own node registration and addresses, its own TLS server with webhook
// authentication and authorization, serving logs, exec, /healthz and
// /metrics/resource to the API server and metrics-server.
//
// Each kubelet is one process (the kubelet keeps global state) of about 80 MB,
// so tests run a few; thousands of nodes stay simulated.
package realkubelet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/netns"
)

// Options describes one kubelet.
type Options struct {
	// Name is the node name. Required.
	Name string
	// IPs are the node IPs (--node-ip; one per family). The kubelet refuses
	// loopback and wants each on an interface: inside a private network
	// namespace Start assigns them; elsewhere the caller must (netns.Host).
	// Required.
	IPs []netip.Addr
	// Dir holds the kubelet's state and log. Required.
	Dir string
	// Port is the kubelet port; default 10250.
	Port int
	// Config, if set, authenticates the kubelet (a client certificate for
	// the node); default a fresh one from the control plane.
	Config *rest.Config
}

// Kubelet is a running kubelet process.
type Kubelet struct {
	*controlplane.Process
	opts Options
	log  string
}

// BinEnv names the environment variable that points at a kubelet binary (a
// hollowkubelet built by hack/build-kube.sh) to run instead of the one beside
// the control plane: make test-matrix's skew run points it at an older
// version's.
const BinEnv = "CSRGUARD_KUBELET_BIN"

// Start registers nothing itself: it starts the kubelet, which registers its
// Node with a client certificate for the node (CN system:node:<name>), reports
// its addresses and asks for a serving certificate. It returns at once.
func Start(cp *controlplane.ControlPlane, opts Options) (*Kubelet, error) {
	if opts.Name == "" || len(opts.IPs) == 0 || opts.Dir == "" {
		return nil, errors.New("realkubelet: Name, IPs and Dir are required")
	}
	if opts.Port == 0 {
		opts.Port = 10250
	}
	bin := os.Getenv(BinEnv)
	if bin == "" {
		bin = filepath.Join(os.Getenv(controlplane.BinDirEnv), "hollowkubelet")
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("realkubelet: %w (run hack/build-kube.sh, or make test)", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	if netns.Inside() {
		for _, ip := range opts.IPs {
			if err := netns.AddAddress(ip); err != nil {
				return nil, fmt.Errorf("realkubelet %s: %w", opts.Name, err)
			}
		}
	}
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = cp.NodeConfig(opts.Name); err != nil {
			return nil, err
		}
	}
	kubeconfig := filepath.Join(opts.Dir, "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, cfg); err != nil {
		return nil, err
	}
	ips := make([]string, len(opts.IPs))
	for i, ip := range opts.IPs {
		ips[i] = ip.String()
	}
	k := &Kubelet{opts: opts, log: filepath.Join(opts.Dir, "kubelet.log")}
	var err error
	k.Process, err = controlplane.StartProcess(bin, []string{
		"--kubeconfig=" + kubeconfig,
		"--name=" + opts.Name,
		"--node-ip=" + strings.Join(ips, ","),
		"--root-dir=" + filepath.Join(opts.Dir, "root"),
		"--port=" + strconv.Itoa(opts.Port),
		"--client-ca-file=" + cp.ClusterCAFile(),
		"--v=2",
	}, k.log)
	if err != nil {
		return nil, fmt.Errorf("realkubelet %s: %w", opts.Name, err)
	}
	return k, nil
}

// Name returns the node name.
func (k *Kubelet) Name() string { return k.opts.Name }

// Endpoint returns host:port of the kubelet's TLS server, at its first IP.
func (k *Kubelet) Endpoint() string {
	return netip.AddrPortFrom(k.opts.IPs[0], uint16(k.opts.Port)).String()
}

// LogFile returns the path of the kubelet's log.
func (k *Kubelet) LogFile() string { return k.log }

// Stop stops the kubelet and waits for it.
func (k *Kubelet) Stop() { _ = k.Process.Stop() }

// RunPod creates a Pod for a container named name on node (no scheduler
// runs), which a real kubelet then runs with its fake runtime: kubectl logs
// shows one line, exec echoes the command. No service-account controller runs
// either, so it creates the namespace's default ServiceAccount if needed.
func RunPod(ctx context.Context, cs kubernetes.Interface, name, node string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount default/default: %w", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: name, Image: "registry.k8s.io/pause:3.10"}}},
	}
	if _, err := cs.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Pod default/%s: %w", name, err)
	}
	return nil
}
