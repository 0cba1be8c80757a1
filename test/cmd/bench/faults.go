package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/storm"
)

// faultOptions are the flags of the fault phase.
type faultOptions struct {
	// spec is --fault: "all" or a comma-separated list of storm faults; empty
	// skips the phase.
	spec string
	// rate is CSRs filed per second.
	rate float64
	// hostileEvery is nodes per hostile CSR.
	hostileEvery int
}

func (f *faultOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.spec, "fault", "", `Run only the fault phase: "all" or a comma-separated list of apiserver-restart, etcd-restart, leader-kill, leader-pause, watch-expiry; each on a fresh control plane, in the middle of a storm of --n nodes' CSRs.`)
	fs.Float64Var(&f.rate, "fault-rate", 200, "CSRs filed per second in the fault phase, from --clients goroutines.")
	fs.IntVar(&f.hostileEvery, "fault-hostile-every", 10, "Nodes per hostile CSR in the fault phase: one node in this many also files one, with its own credentials.")
}

// runFaults is the fault phase: for each fault of --fault, on a fresh control
// plane, two csrguard replicas with leader election and their default lease
// decide a storm of --n nodes' CSRs with a hostile share while the fault is
// injected (test/storm), and the phase prints one table row per fault. It
// fails if any run broke an invariant.
func runFaults(ctx context.Context, o options, args []string) error {
	faults, err := storm.ParseFaults(o.faults.spec)
	if err != nil {
		return fmt.Errorf("--fault: %w", err)
	}
	switch {
	case o.n < 2 || o.n > 100_000:
		return fmt.Errorf("--n must be between 2 and 100000 in the fault phase, got %d", o.n)
	case o.faults.rate <= 0:
		return fmt.Errorf("--fault-rate must be > 0, got %v", o.faults.rate)
	case o.faults.hostileEvery < 1:
		return fmt.Errorf("--fault-hostile-every must be >= 1, got %d", o.faults.hostileEvery)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be > 0, got %v", o.timeout)
	}
	if _, err := os.Stat(o.csrguard); err != nil {
		return fmt.Errorf("--csrguard: %w (make build builds it)", err)
	}
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return err
	}

	fmt.Printf("bench faults: %d nodes, %d clients, %.0f CSRs/s, one node in %d also files a hostile CSR; %d CPUs, %s\n",
		o.n, o.clients, o.faults.rate, o.faults.hostileEvery, runtime.NumCPU(), runtime.Version())
	var results []storm.Result
	var failed []string
	for _, f := range faults {
		fmt.Printf("\n== fault %s\n", f)
		r, err := benchFault(ctx, o, f)
		fmt.Println(r)
		if err != nil {
			fmt.Printf("%s: %v\n", f, err)
			failed = append(failed, fmt.Sprintf("%s: %v", f, err))
		}
		results = append(results, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	fmt.Printf("\nFaults mid-storm: %d nodes each file their kubelet's CSR and one in %d also a hostile one (a neighbour's address or name, a reserved name or address, an address no node has) with its own credentials, at %.0f CSRs/s; two csrguard replicas with leader election (default lease: 15s, renew deadline 10s, retry 2s), --workers=%d, --address-settle-time=3s; one fault per run, injected once a third of the CSRs are filed; %d CPUs shared by the control plane, csrguard and this program.\n\n",
		o.n, o.faults.hostileEvery, o.faults.rate, o.workers, runtime.NumCPU())
	storm.PrintTable(os.Stdout, results)
	fmt.Println("\nA restart has healed when the API server answers again; a leader fault when another replica acquired the Lease (its acquireTime); a watch expiry at once. Approvals are as seen by a watch of this program's; decision writes failed are csrguard_errors_total{stage=\"write\"} summed over both replicas.")
	fmt.Printf("\nCommand: %s\n", commandLine(args))
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// benchFault runs one fault on a fresh control plane.
func benchFault(ctx context.Context, o options, f storm.Fault) (storm.Result, error) {
	dir := filepath.Join(o.dir, "fault-"+string(f))
	if err := os.RemoveAll(dir); err != nil {
		return storm.Result{Fault: f}, err
	}
	start := time.Now()
	cp, err := controlplane.Start(ctx, f.ControlPlane(controlplane.Options{Dir: dir}))
	if err != nil {
		return storm.Result{Fault: f}, fmt.Errorf("start control plane: %w", err)
	}
	defer func() { _ = cp.Stop() }()
	fmt.Printf("control plane ready in %s (logs in %s)\n", time.Since(start).Round(100*time.Millisecond), filepath.Join(dir, "logs"))
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return storm.Result{Fault: f}, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: storm.Namespace}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return storm.Result{Fault: f}, fmt.Errorf("create namespace %s: %w", storm.Namespace, err)
	}

	var replicas []storm.Replica
	for _, name := range []string{"replica-a", "replica-b"} {
		rdir := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(rdir, "logs"), 0o700); err != nil {
			return storm.Result{Fault: f}, err
		}
		proc, ep, err := startApprover(ctx, cp, o, "csrguard", rdir, storm.ReplicaFlags(storm.Lease{})...)
		if err != nil {
			return storm.Result{Fault: f}, err
		}
		defer func() { _ = proc.Stop() }()
		replicas = append(replicas, storm.Replica{Name: name, Process: proc, Metrics: ep.metrics, Log: filepath.Join(rdir, "logs", "csrguard.log")})
	}
	return storm.Run(ctx, cp, replicas, f, storm.Options{
		Nodes: o.n, HostileEvery: o.faults.hostileEvery, Rate: o.faults.rate, Clients: o.clients, Timeout: o.timeout,
		Logf: func(format string, args ...any) { fmt.Printf(format+"\n", args...) },
	})
}
