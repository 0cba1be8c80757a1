// Command bench measures how fast csrguard approves a burst of legitimate
// kubelet-serving CSRs, against the ceiling of an approver that checks
// nothing (test/cmd/nocheck-approver), on a real local control plane.
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
// approver gets the same fresh control plane and the same load. BRIEF.md §6
// holds the bar set by other approvers on a 2-core machine.
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
	"strings"
	"syscall"
	"time"
)

// options are the parsed flags.
type options struct {
	n, clients, workers int
	csrguard, nocheck   string
	dir                 string
	approvers           []string
	timeout             time.Duration
}

func main() {
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
	var o options
	fs.IntVar(&o.n, "n", 2000, "Nodes, and so CSRs, per approver.")
	fs.IntVar(&o.clients, "clients", 16, "Goroutines creating Nodes and CSRs in parallel.")
	fs.IntVar(&o.workers, "workers", 16, "--workers passed to every approver.")
	fs.StringVar(&o.csrguard, "csrguard", "_output/bin/csrguard", "csrguard binary.")
	fs.StringVar(&o.nocheck, "nocheck", "", "nocheck-approver binary (go build -o _output/bin/nocheck-approver ./test/cmd/nocheck-approver).")
	fs.StringVar(&o.dir, "dir", "_output/bench", "Directory for each run's control plane data and logs; emptied first.")
	approvers := fs.String("approvers", "csrguard,nocheck", "Approvers to run, in order: csrguard, nocheck.")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "How long to wait for every CSR to be approved.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.validate(*approvers); err != nil {
		return err
	}

	fmt.Printf("bench: %d nodes and CSRs, %d clients, %d approver workers, %d CPUs, %s\n",
		o.n, o.clients, o.workers, runtime.NumCPU(), runtime.Version())
	var results []result
	var failed []string
	for _, name := range o.approvers {
		fmt.Printf("\n== %s\n", name)
		r, err := benchApprover(ctx, o, name)
		if err != nil {
			// Report what the other approvers measured rather than nothing.
			fmt.Printf("%s: %v\n", name, err)
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
		}
		if r != nil {
			results = append(results, *r)
			if r.approved < o.n {
				failed = append(failed, fmt.Sprintf("%s: %d of %d CSRs approved, %d denied", name, r.approved, o.n, r.denied))
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	fmt.Println()
	printTable(os.Stdout, o, results)
	fmt.Printf("\nCommand: %s\n", commandLine(args))
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func (o *options) validate(approvers string) error {
	switch {
	case o.n < 1:
		return fmt.Errorf("--n must be >= 1, got %d", o.n)
	case o.n > maxNodes:
		return fmt.Errorf("--n must be <= %d (one unique 10.128.0.0/9 address per node), got %d", maxNodes, o.n)
	case o.clients < 1:
		return fmt.Errorf("--clients must be >= 1, got %d", o.clients)
	case o.workers < 1:
		return fmt.Errorf("--workers must be >= 1, got %d", o.workers)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be > 0, got %v", o.timeout)
	}
	for _, a := range strings.Split(approvers, ",") {
		a = strings.TrimSpace(a)
		var bin, flag string
		switch a {
		case "csrguard":
			bin, flag = o.csrguard, "csrguard"
		case "nocheck":
			bin, flag = o.nocheck, "nocheck"
		default:
			return fmt.Errorf(`--approvers: unknown approver %q: want "csrguard" or "nocheck"`, a)
		}
		if bin == "" {
			return fmt.Errorf("--%s is required to run the %s approver", flag, a)
		}
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("--%s: %w (make bench builds it)", flag, err)
		}
		o.approvers = append(o.approvers, a)
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
