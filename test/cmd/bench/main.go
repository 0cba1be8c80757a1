// Command bench measures how fast csrguard approves a burst of legitimate
// kubelet-serving CSRs, against the ceiling of an approver that checks
// nothing and has no client-side rate limit (test/cmd/nocheck-approver), on
// a real local control plane. csrguard runs with its defaults and with the
// client-side cap it had before (csrguard-capped), every approver as a
// ServiceAccount, and each run also reports the API server's CPU time and
// request latencies over the same window: what a cap would protect.
//
// For each approver in turn, on a fresh control plane (test/controlplane),
// it registers N Nodes as the nodes themselves, starts the approver, then has
// --clients goroutines create one CSR per node with that node's own client
// certificate — as N kubelets asking at once after a control-plane restore or
// a CA rotation would. It reports when the last CSR was approved, per-CSR
// latency, the approver's API requests per CSR, peak RSS and CPU time, and
// exits non-zero if any CSR was not approved.
//
// The numbers are only comparable within one run: the control plane, the
// approver and this program share the machine's cores, which is why every
// approver gets the same fresh control plane and the same load. The bar is the
// no-check ceiling measured in the same run; the README's Performance section
// quotes a run of `make bench` and how to read it.
//
// With --recovery-nodes N it measures recovery after a long outage (see
// recovery.go): N nodes each with --recovery-pending pending CSRs, then
// csrguard started; it reports when every node's newest CSR was issued and
// fails unless exactly that one per node was approved.
//
// Then, unless --probe-nodes=0, it measures csrguard's kubelet monitor: on
// another fresh control plane it registers --probe-nodes Nodes whose kubelets
// are TLS listeners in this process (see probe.go), runs csrguard with a
// short --probe-interval until --probe-sweeps sweeps have ended, and reports
// the longest sweep against the interval, csrguard's CPU time per node
// probed and the mean handshake. It exits non-zero unless every node was
// probed ok.
//
// --n takes several sizes (2000,10000); each runs in full and a summary
// table gives one row per size, with csrguard's peak RSS per Node+CSR as
// the slope between sizes. With --backpressure-nodes N it runs csrguard at
// one Priority and Fairness seat (see backpressure.go).
//
// With --fault it runs only the fault phase (see faults.go and test/storm):
// for each fault in turn — an API server restart, etcd killed and restarted,
// the leading csrguard replica killed or paused, a watch expiry — on a fresh
// control plane, in the middle of a storm of --n nodes' CSRs with a hostile
// share, and checks that every legitimate CSR was approved and issued and
// no hostile one approved. `make bench-faults` runs it.
//
// It needs the binaries of hack/build-kube.sh ($CSRGUARD_KUBE_BIN), a built
// csrguard and a built nocheck-approver; `make bench` sets all of that up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/csrguard/csrguard/internal/controller"
	"github.com/csrguard/csrguard/test/netns"
)

// options are the parsed flags.
type options struct {
	// sizes are the node counts to run, n the one running.
	sizes                       sizes
	n, clients, workers, rounds int
	csrguard, nocheck           string
	dir                         string
	approvers                   []string
	timeout                     time.Duration

	// The probe phase; probeNodes 0 skips it.
	probeNodes, probeSweeps, probeConcurrency int
	probeInterval                             time.Duration

	// The recovery phase; recoveryNodes 0 skips it.
	recoveryNodes, recoveryPending int

	// The fault phase (faults.go); when set, it runs alone.
	faults faultOptions
	// The back-pressure phase; backpressureNodes 0 skips it. throttle is
	// set while it runs.
	backpressureNodes int
	throttle          bool
}

func main() {
	// Everything runs in a private network namespace (see standInAddr).
	if code, parent, err := netns.Private(); err != nil || parent {
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := options{sizes: sizes{2000}}
	fs.Var(&o.sizes, "n", "Nodes, and so CSRs, per approver; several sizes, comma-separated (2000,10000), run one after the other, and the summary gives csrguard's peak RSS per Node+CSR between the smallest and each other.")
	fs.IntVar(&o.clients, "clients", 16, "Goroutines creating Nodes and CSRs in parallel.")
	fs.IntVar(&o.workers, "workers", controller.DefaultWorkers, "--workers passed to every approver (default csrguard's).")
	fs.StringVar(&o.csrguard, "csrguard", "_output/bin/csrguard", "csrguard binary.")
	fs.StringVar(&o.nocheck, "nocheck", "", "nocheck-approver binary (go build -o _output/bin/nocheck-approver ./test/cmd/nocheck-approver).")
	fs.StringVar(&o.dir, "dir", "_output/bench", "Directory for each run's control plane data and logs; emptied first.")
	approvers := fs.String("approvers", "csrguard,csrguard-capped,nocheck", `Approvers to run, in order: csrguard (its defaults), csrguard-capped (--kube-api-qps=300 --kube-api-burst=600, its defaults before #13), csrguard-unlimited (--kube-api-qps=-1), nocheck (the ceiling, no client-side limit); "" runs none.`)
	fs.IntVar(&o.rounds, "rounds", 3, "Rounds of the approval phase; the order of the approvers alternates between rounds and the summary gives medians, because one round on a shared 2-core machine is noisy.")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "How long to wait for every CSR to be approved, and for one probe sweep.")
	fs.IntVar(&o.probeNodes, "probe-nodes", 0, "Nodes whose kubelets csrguard probes in the probe phase (default --n); 0 skips the phase.")
	fs.DurationVar(&o.probeInterval, "probe-interval", 30*time.Second, "csrguard's --probe-interval in the probe phase; shorter than the production default of 3m so that several sweeps take a minute or two.")
	fs.IntVar(&o.probeSweeps, "probe-sweeps", 3, "Sweeps to see end in the probe phase; CPU time is counted from the end of the first to the end of the last, so at least 2.")
	fs.IntVar(&o.probeConcurrency, "probe-concurrency", 32, "csrguard's --probe-concurrency in the probe phase; csrguard's default is the same.")
	fs.IntVar(&o.recoveryNodes, "recovery-nodes", 0, "Nodes in the recovery phase, each with --recovery-pending pending CSRs when csrguard starts; 0 skips the phase.")
	fs.IntVar(&o.recoveryPending, "recovery-pending", 12, "Pending CSRs per node in the recovery phase, the newest filed last: what a kubelet leaves after a 3-hour outage.")
	o.faults.addFlags(fs)
	fs.IntVar(&o.backpressureNodes, "backpressure-nodes", 0, "CSRs in the back-pressure phase, where Priority and Fairness gives csrguard one seat (see backpressure.go); 0 skips the phase.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Validate at the largest size; each size then runs with its own.
	o.n = slices.Max(o.sizes)
	if o.faults.spec != "" {
		return runFaults(ctx, o, args)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["probe-nodes"] {
		o.probeNodes = o.n
	}
	if err := o.validate(*approvers); err != nil {
		return err
	}

	var summaries []sizeSummary
	var failed []string
	for _, n := range o.sizes {
		o.n = n
		if !set["probe-nodes"] {
			o.probeNodes = n
		}
		s, f, err := runSize(ctx, o)
		summaries, failed = append(summaries, s), append(failed, f...)
		if err != nil {
			return err
		}
	}

	var recovery *recoveryResult
	if o.recoveryNodes > 0 {
		fmt.Printf("\n== recovery after an outage\n")
		r, err := benchRecovery(ctx, o)
		if err != nil {
			fmt.Printf("recovery: %v\n", err)
			failed = append(failed, fmt.Sprintf("recovery: %v", err))
		}
		recovery = r
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	var backpressure *backpressureResult
	if o.backpressureNodes > 0 {
		fmt.Printf("\n== back-pressure, %d CSRs\n", o.backpressureNodes)
		r, err := benchBackpressure(ctx, o)
		if err != nil {
			fmt.Printf("back-pressure: %v\n", err)
			failed = append(failed, fmt.Sprintf("back-pressure: %v", err))
		}
		backpressure = r
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	if recovery != nil {
		fmt.Println()
		printRecoveryTable(os.Stdout, o, *recovery)
	}
	if backpressure != nil {
		fmt.Println()
		printBackpressureTable(os.Stdout, *backpressure)
	}
	if len(o.approvers) > 0 || o.probeNodes > 0 {
		printSummary(os.Stdout, summaries)
	}
	fmt.Printf("\nCommand: %s\n", commandLine(args))
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// runSize runs the approval rounds and the probe phase at o.n nodes, prints
// their tables, and returns what they measured and what failed. The error
// is only for an interrupted run.
func runSize(ctx context.Context, o options) (sizeSummary, []string, error) {
	fmt.Printf("bench: %d nodes and CSRs, %d clients, %d approver workers, %d CPUs, %s\n",
		o.n, o.clients, o.workers, runtime.NumCPU(), runtime.Version())
	sum := sizeSummary{n: o.n}
	var failed []string
	for round := range o.rounds {
		order := slices.Clone(o.approvers)
		if round%2 == 1 {
			slices.Reverse(order) // who goes first gets a cooler machine
		}
		var results []result
		for _, name := range order {
			fmt.Printf("\n== %s, N=%d (round %d/%d)\n", name, o.n, round+1, o.rounds)
			r, err := benchApprover(ctx, o, name)
			if err != nil {
				// Report what the other approvers measured rather than nothing.
				fmt.Printf("%s: %v\n", name, err)
				failed = append(failed, fmt.Sprintf("%s at N=%d: %v", name, o.n, err))
			}
			if r != nil {
				results = append(results, *r)
				if r.approved < o.n {
					failed = append(failed, fmt.Sprintf("%s: %d of %d CSRs approved, %d denied", name, r.approved, o.n, r.denied))
				}
			}
			if ctx.Err() != nil {
				return sum, failed, ctx.Err()
			}
		}
		sum.rounds = append(sum.rounds, results)
	}

	if o.probeNodes > 0 {
		fmt.Printf("\n== kubelet probes, %d nodes\n", o.probeNodes)
		r, err := benchProbes(ctx, o)
		if err != nil {
			fmt.Printf("probes: %v\n", err)
			failed = append(failed, fmt.Sprintf("probes at %d nodes: %v", o.probeNodes, err))
		}
		sum.probes = r
		if ctx.Err() != nil {
			return sum, failed, ctx.Err()
		}
	}

	for i, results := range sum.rounds {
		if len(results) > 0 {
			fmt.Printf("\nN=%d, round %d of %d:\n\n", o.n, i+1, len(sum.rounds))
			printTable(os.Stdout, o, results)
		}
	}
	if len(sum.rounds) > 1 && len(o.approvers) > 0 {
		printMedians(os.Stdout, sum.rounds)
	}
	if sum.probes != nil {
		fmt.Println()
		printProbeTable(os.Stdout, *sum.probes)
	}
	return sum, failed, nil
}

func (o *options) validate(approvers string) error {
	switch {
	case o.n < 1:
		return fmt.Errorf("--n must be >= 1, got %d", o.n)
	case o.n > maxNodes:
		return fmt.Errorf("--n must be <= %d (one unique 10.128.0.0/9 address per node), got %d", maxNodes, o.n)
	case o.rounds < 1:
		return fmt.Errorf("--rounds must be >= 1, got %d", o.rounds)
	case o.clients < 1:
		return fmt.Errorf("--clients must be >= 1, got %d", o.clients)
	case o.workers < 1:
		return fmt.Errorf("--workers must be >= 1, got %d", o.workers)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be > 0, got %v", o.timeout)
	case o.probeNodes < 0:
		return fmt.Errorf("--probe-nodes must be >= 0, got %d", o.probeNodes)
	case o.probeNodes > maxProbeNodes:
		return fmt.Errorf("--probe-nodes must be <= %d (one address of %s per node), got %d", maxProbeNodes, netns.Bench, o.probeNodes)
	// csrguard stamps a sweep's end in whole seconds, so sweeps a second
	// apart could end with the same stamp and one go unseen.
	case o.probeNodes > 0 && o.probeInterval < 2*time.Second:
		return fmt.Errorf("--probe-interval must be >= 2s, got %v", o.probeInterval)
	case o.probeNodes > 0 && o.probeSweeps < 2:
		return fmt.Errorf("--probe-sweeps must be >= 2, got %d", o.probeSweeps)
	case o.probeNodes > 0 && o.probeConcurrency < 1:
		return fmt.Errorf("--probe-concurrency must be >= 1, got %d", o.probeConcurrency)
	case o.recoveryNodes < 0 || o.recoveryNodes > maxNodes:
		return fmt.Errorf("--recovery-nodes must be between 0 and %d, got %d", maxNodes, o.recoveryNodes)
	case o.backpressureNodes < 0 || o.backpressureNodes > maxNodes:
		return fmt.Errorf("--backpressure-nodes must be between 0 and %d, got %d", maxNodes, o.backpressureNodes)
	case o.recoveryNodes > 0 && (o.recoveryPending < 1 || o.recoveryPending > 100):
		return fmt.Errorf("--recovery-pending must be between 1 and 100, got %d", o.recoveryPending)
	}
	for a := range strings.SplitSeq(approvers, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue // --approvers="" runs the probe phase alone
		}
		var bin, flag string
		switch a {
		case csrguardDefaults, csrguardUnlimited, csrguardCapped:
			bin, flag = o.csrguard, "csrguard"
		case nocheck:
			bin, flag = o.nocheck, "nocheck"
		default:
			return fmt.Errorf(`--approvers: unknown approver %q: want one of %s`, a, strings.Join(append(slices.Clone(csrguardVariants), nocheck), ", "))
		}
		if bin == "" {
			return fmt.Errorf("--%s is required to run the %s approver", flag, a)
		}
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("--%s: %w (make bench builds it)", flag, err)
		}
		o.approvers = append(o.approvers, a)
	}
	if len(o.approvers) == 0 && o.probeNodes == 0 && o.recoveryNodes == 0 && o.backpressureNodes == 0 {
		return errors.New(`nothing to run: --approvers="", --probe-nodes=0, --recovery-nodes=0 and --backpressure-nodes=0`)
	}
	if (o.probeNodes > 0 || o.recoveryNodes > 0 || o.backpressureNodes > 0) && !slices.Contains(o.approvers, "csrguard") {
		// The approval phases check the binary only for approvers they run.
		if _, err := os.Stat(o.csrguard); err != nil {
			return fmt.Errorf("--csrguard: %w (make build builds it)", err)
		}
	}
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	o.dir = abs
	return nil
}

// commandLine is how to run this benchmark again with the same flags. Under
// go run, os.Args[0] is a temporary binary, so the package path stands in.
func commandLine(args []string) string {
	cmd := []string{"go", "run", "./test/cmd/bench"}
	if !strings.Contains(os.Args[0], "go-build") {
		cmd = []string{os.Args[0]}
	}
	if bin := os.Getenv("CSRGUARD_KUBE_BIN"); bin != "" {
		cmd = append([]string{"CSRGUARD_KUBE_BIN=" + bin}, cmd...)
	}
	for _, a := range args {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd = append(cmd, a)
	}
	return strings.Join(cmd, " ")
}
