package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/diagnose"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/severity"
)

// diagnoseOptions are the flags doctor and certs share.
type diagnoseOptions struct {
	kube        kubeOptions
	policy      policyOptions
	output      printFlags
	probe       bool
	timeout     time.Duration
	concurrency int
	caFile      string
}

func (o *diagnoseOptions) addFlags(s *flagSections) {
	fs := s.section("Probing")
	fs.BoolVar(&o.probe, "probe", true, "Probe each kubelet with a TLS handshake from here. From a laptop kubelets are often unreachable; then the API's view is used.")
	fs.DurationVar(&o.timeout, "probe-timeout", 3*time.Second, "Timeout of one kubelet probe.")
	fs.IntVar(&o.concurrency, "probe-concurrency", 64, "Kubelet probes in flight at once.")
	fs.StringVar(&o.caFile, "kubelet-ca-file", "", "PEM bundle of the kubelet-serving CA; certificates that do not chain to it are reported as untrusted.")
	o.policy.addFlags(s.section("Policy (as the controller runs with)"))
	o.kube.addFlags(s.section("Kubernetes client"), 50, 100)
	o.output.addFlags(s.section("Output"))
}

// snapshot validates the flags and reads the cluster, printing probe
// progress on stderr when probing takes longer than a moment.
func (o *diagnoseOptions) snapshot(cmd *cobra.Command) (diagnose.Snapshot, error) {
	if err := validateOutput(o.output.format); err != nil {
		return diagnose.Snapshot{}, err
	}
	if err := o.kube.validate(); err != nil {
		return diagnose.Snapshot{}, err
	}
	if o.timeout <= 0 {
		return diagnose.Snapshot{}, flagError("probe-timeout", "must be > 0, got %v", o.timeout)
	}
	if o.concurrency < 1 {
		return diagnose.Snapshot{}, flagError("probe-concurrency", "must be >= 1, got %d", o.concurrency)
	}
	cfg, static, err := o.policy.config()
	if err != nil {
		return diagnose.Snapshot{}, err
	}
	prober := monitor.Prober{Timeout: o.timeout}
	if o.caFile != "" {
		if prober.Roots, err = readCAFile("kubelet-ca-file", o.caFile); err != nil {
			return diagnose.Snapshot{}, err
		}
	}
	restCfg, err := o.kube.restConfig()
	if err != nil {
		return diagnose.Snapshot{}, fmt.Errorf("load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return diagnose.Snapshot{}, err
	}
	reader, err := client.New(restCfg, client.Options{})
	if err != nil {
		return diagnose.Snapshot{}, err
	}
	return diagnose.Fetch(cmd.Context(), cs, reader, diagnose.Options{
		Probe: o.probe, Prober: prober, Concurrency: o.concurrency, Policy: cfg, Static: static,
		APIServer: restCfg, Namespace: o.kube.csrguardNamespace(),
		Progress: progressPrinter(cmd.ErrOrStderr(), time.Second), Now: time.Now,
	})
}

// progressPrinter reports probe progress on w, but only once probing has
// taken longer than after, and at most every 250ms.
func progressPrinter(w io.Writer, after time.Duration) func(done, total int) {
	start := time.Now()
	var mu sync.Mutex
	var last time.Time
	return func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if now.Sub(start) < after || (now.Sub(last) < 250*time.Millisecond && done < total) {
			return
		}
		last = now
		fmt.Fprintf(w, "\rprobed %d/%d kubelets", done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

func newDoctorCommand() *cobra.Command {
	o := &diagnoseOptions{}
	var failOn string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Diagnose kubelet serving certificates and the CSR flow, and say what to do",
		Long: `Read the cluster — Nodes, kubelet-serving CSRs, approvers, and each kubelet's
serving certificate through a TLS handshake — and report findings, each with
its severity, evidence and fix (Talos-aware when nodes run Talos). Recognises
the incident csrguard exists for: kubelets answering "remote error: tls:
internal error" because their serving CSRs are pending and nothing approves
them.
` + exitCodes("a finding is at least as severe as --fail-on"),
		Example: `  csrguard doctor
  kubectl csrguard doctor -o json --probe=false
  kubectl csrguard doctor --as=jane --context=prod -o name   # the IDs of the findings`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			threshold, err := parseSeverity(failOn)
			if err != nil {
				return err
			}
			s, err := o.snapshot(cmd)
			if err != nil {
				return err
			}
			findings := diagnose.Diagnose(s)
			if err := o.output.print(cmd.OutOrStdout(), doctorOutput{diagnose.NewReport(s, findings)}); err != nil {
				return err
			}
			for _, f := range findings {
				if f.Severity >= threshold {
					return findingsError{fmt.Errorf("%s finding: %s", f.Severity, f.Title)}
				}
			}
			return nil
		},
	}
	var s flagSections
	s.section("Doctor").StringVar(&failOn, "fail-on", "critical", `Exit 1 when a finding is at least this severe: "critical" or "warning".`)
	o.addFlags(&s)
	s.install(cmd)
	return cmd
}

func parseSeverity(s string) (severity.Level, error) {
	switch s {
	case "critical":
		return severity.Critical, nil
	case "warning":
		return severity.Warning, nil
	}
	return 0, flagError("fail-on", `must be "critical" or "warning", got %q`, s)
}

func newCertsCommand() *cobra.Command {
	o := &diagnoseOptions{}
	var sortBy string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "List every kubelet's serving certificate with its expiry",
		Long: `List one row per node: its kubelet serving certificate's expiry and residual
time, issuer, where the facts come from (a TLS probe, or the newest
certificate issued through a CSR when the kubelet cannot be reached from
here) and its state. Like 'kubeadm certs check-expiration', for kubelets;
the API server's serving certificate and the kubeconfig's client
certificate follow.
` + exitCodes("a kubelet's certificate is missing, expired or not served"),
		Example: `  csrguard certs --sort-by=expiry
  kubectl csrguard certs -o json
  kubectl csrguard certs -o jsonpath='{range .certificates[*]}{.node} {.residualSeconds}{"\n"}{end}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sortBy != sortByNode && sortBy != sortByExpiry {
				return flagError("sort-by", `must be "node" or "expiry", got %q`, sortBy)
			}
			s, err := o.snapshot(cmd)
			if err != nil {
				return err
			}
			rows := diagnose.Certs(s)
			restCfg, err := o.kube.restConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			other := otherCerts(cmd.Context(), restCfg, s.Now)
			if err := o.output.print(cmd.OutOrStdout(), newCertsOutput(rows, sortBy, other)); err != nil {
				return err
			}
			for _, r := range rows {
				switch r.State {
				case "ok", "expiring", "san-mismatch", "untrusted":
				default:
					return findingsError{fmt.Errorf("node %s: %s", r.Node, r.State)}
				}
			}
			return nil
		},
	}
	var s flagSections
	s.section("Certs").StringVar(&sortBy, "sort-by", "node", `Sort rows by "node" or "expiry".`)
	o.addFlags(&s)
	s.install(cmd)
	return cmd
}
