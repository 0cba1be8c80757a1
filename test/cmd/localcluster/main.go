// Command localcluster runs csrguard's local control plane for humans:
//
//	localcluster dev  [--nodes N]  a control plane and N simulated kubelets until Ctrl-C
//	localcluster demo              the incident and csrguard's fix, told step by step
//
// It needs the binaries of hack/build-kube.sh ($CSRGUARD_KUBE_BIN); the
// Makefile's dev-cluster and demo targets set everything up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: localcluster dev|demo [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "number of simulated kubelets")
	dir := fs.String("dir", "_output/dev", "directory for PKI, data, logs and the kubeconfig")
	osImage := fs.String("os", "talos", `OS image the nodes report: "talos" or "debian"`)
	csrguard := fs.String("csrguard", "_output/bin/csrguard", "csrguard binary (demo)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *nodes < 1 {
		return fmt.Errorf("--nodes must be >= 1, got %d", *nodes)
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

// cluster starts a control plane and n kubelets and writes the admin kubeconfig.
func cluster(ctx context.Context, dir string, n int, image string) (*controlplane.ControlPlane, []*kubelet.Kubelet, string, error) {
	step("Starting etcd, kube-apiserver and kube-controller-manager (built from Go modules)")
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir})
	if err != nil {
		return nil, nil, "", err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, cp.AdminConfig()); err != nil {
		_ = cp.Stop()
		return nil, nil, "", err
	}
	step(fmt.Sprintf("Starting %d simulated kubelets with serving-certificate rotation on (%s)", n, image))
	pool := kubelet.NewLoopbackPool()
	var ks []*kubelet.Kubelet
	for i := range n {
		name := fmt.Sprintf("node-%d", i+1)
		if image == kubelet.Talos {
			name = fmt.Sprintf("talos-node-%d", i+1)
		}
		cfg, err := cp.NodeConfig(name)
		if err != nil {
			return cp, ks, kubeconfig, err
		}
		k, err := kubelet.Start(ctx, kubelet.Options{Name: name, Config: cfg, Addresses: kubelet.Addresses(name, pool.Next()), OSImage: image})
		if err != nil {
			return cp, ks, kubeconfig, err
		}
		ks = append(ks, k)
	}
	return cp, ks, kubeconfig, nil
}

func dev(ctx context.Context, dir string, n int, image string) error {
	cp, ks, kubeconfig, err := cluster(ctx, dir, n, image)
	defer shutdown(cp, ks)
	if err != nil {
		return err
	}
	kubectl := filepath.Join(os.Getenv(controlplane.BinDirEnv), "kubectl")
	fmt.Printf(`
Local control plane ready: %s, %d simulated kubelets.

  export KUBECONFIG=%s
  %s get nodes,csr
  # Run csrguard against it (loopback node addresses need the test-only flag):
  go run ./cmd/csrguard controller --kubeconfig $KUBECONFIG --insecure-test-allow-loopback

Logs: %s/logs. Press Ctrl-C to stop and clean up.
`, cp.URL, len(ks), kubeconfig, kubectl, dir)
	<-ctx.Done()
	fmt.Println("\nStopping…")
	return nil
}

func shutdown(cp *controlplane.ControlPlane, ks []*kubelet.Kubelet) {
	for _, k := range ks {
		k.Stop()
	}
	if cp != nil {
		_ = cp.Stop()
	}
}

func step(msg string) {
	fmt.Printf("%s  ==> %s\n", time.Now().Format("15:04:05"), msg)
}
