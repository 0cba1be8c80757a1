package cli

import (
	"crypto/x509"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/csrguard/csrguard/internal/approval"
	"github.com/csrguard/csrguard/internal/controller"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
)

// policyOptions are the raw policy flags, shared by every command that
// evaluates CSRs (controller, explain, approve), so they all decide alike.
type policyOptions struct {
	maxExpiration         time.Duration
	maxSANs               int
	clusterDomain         string
	allowedNodeCIDRs      []string
	dnsNameRegex          string
	reservedNames         []string
	reservedCIDRs         []string
	apiServerAddresses    []string
	serviceCIDRs          []string
	addressSettleTime     time.Duration
	controlPlaneLabels    []string
	insecureAllowLoopback bool
}

func (o *policyOptions) addFlags(fs *pflag.FlagSet) {
	d := policy.DefaultConfig()
	fs.DurationVar(&o.maxExpiration, "max-expiration", d.MaxExpiration, "Deny CSRs whose spec.expirationSeconds asks for longer than this.")
	fs.IntVar(&o.maxSANs, "max-sans", d.MaxSANs, "Deny CSRs with more DNS and IP SANs than this (at most 32).")
	fs.StringVar(&o.clusterDomain, "cluster-domain", d.ClusterDomain, "The cluster DNS domain; names in it, *.svc, *.pod and <service>.<namespace> of an existing namespace are never approved.")
	fs.StringSliceVar(&o.allowedNodeCIDRs, "allowed-node-cidrs", nil, "If set, every IP SAN must lie in one of these CIDRs (comma-separated).")
	fs.StringVar(&o.dnsNameRegex, "dns-name-regex", "", "If set, every DNS SAN must match this regular expression in full.")
	fs.StringSliceVar(&o.reservedNames, "reserved-names", nil, "Extra DNS names never approved, e.g. an API server load balancer name.")
	fs.StringSliceVar(&o.reservedCIDRs, "reserved-cidrs", nil, "Extra addresses or CIDRs never approved, e.g. a control-plane VIP or the pod CIDRs (Node pod CIDRs are not read).")
	fs.StringSliceVar(&o.apiServerAddresses, "apiserver-addresses", nil, "API server addresses never approved, added to those discovered from the kubernetes Service and its EndpointSlices.")
	fs.StringSliceVar(&o.serviceCIDRs, "service-cidrs", nil, "Service CIDRs never approved, added to the ServiceCIDR objects discovered (set it on clusters older than 1.33).")
	fs.DurationVar(&o.addressSettleTime, "address-settle-time", d.AddressSettleTime, "How long a CSR whose SANs are not (yet) its Node's addresses is held before it is denied; covers cache lag after an address change.")
	fs.StringSliceVar(&o.controlPlaneLabels, "control-plane-labels", d.ControlPlaneLabels, `Labels, as "key" or "key=value", that mark a control-plane Node, which may hold its own API server addresses and names (RKE1: node-role.kubernetes.io/controlplane=true). Each must be a label NodeRestriction forbids kubelets to set on themselves.`)
	fs.BoolVar(&o.insecureAllowLoopback, "insecure-test-allow-loopback", false, "TEST ONLY: approve loopback SANs (127.0.0.0/8, ::1), for csrguard's own local cluster when it falls back to loopback addresses. Never set it in a real cluster.")
}

// config validates the flags and returns the parsed policy and the static
// cluster addresses.
func (o *policyOptions) config() (policy.Config, policy.Cluster, error) {
	cfg := policy.DefaultConfig()
	var static policy.Cluster
	var err error
	if o.maxExpiration <= 0 {
		return cfg, static, flagError("max-expiration", "must be > 0, got %v", o.maxExpiration)
	}
	if o.maxSANs <= 0 || o.maxSANs > policy.MaxSANsLimit {
		return cfg, static, flagError("max-sans", "must be 1 to %d, got %d", policy.MaxSANsLimit, o.maxSANs)
	}
	if o.addressSettleTime < 0 {
		return cfg, static, flagError("address-settle-time", "must be >= 0, got %v", o.addressSettleTime)
	}
	cfg.MaxExpiration, cfg.MaxSANs, cfg.AddressSettleTime = o.maxExpiration, o.maxSANs, o.addressSettleTime
	if errs := validation.IsDNS1123Subdomain(o.clusterDomain); len(errs) > 0 {
		return cfg, static, flagError("cluster-domain", "must be a lowercase DNS name without a trailing dot, got %q", o.clusterDomain)
	}
	for _, n := range o.reservedNames {
		if strings.TrimSpace(n) == "" {
			return cfg, static, flagError("reserved-names", "must not hold an empty name")
		}
	}
	cfg.ClusterDomain, cfg.ExtraReservedNames = o.clusterDomain, o.reservedNames
	cfg.InsecureAllowLoopback = o.insecureAllowLoopback
	cfg.ControlPlaneLabels = o.controlPlaneLabels
	for _, sel := range cfg.ControlPlaneLabels {
		if err := policy.ValidateControlPlaneLabel(sel); err != nil {
			return cfg, static, flagError("control-plane-labels", "entry %q cannot mark control-plane nodes: %v", sel, err)
		}
	}
	if cfg.AllowedNodeCIDRs, err = parsePrefixes("allowed-node-cidrs", o.allowedNodeCIDRs); err != nil {
		return cfg, static, err
	}
	if cfg.ExtraReservedCIDRs, err = parsePrefixes("reserved-cidrs", o.reservedCIDRs); err != nil {
		return cfg, static, err
	}
	if static.APIServerAddresses, err = parseAddrs("apiserver-addresses", o.apiServerAddresses); err != nil {
		return cfg, static, err
	}
	if static.ServiceCIDRs, err = parsePrefixes("service-cidrs", o.serviceCIDRs); err != nil {
		return cfg, static, err
	}
	if o.dnsNameRegex != "" {
		re, err := regexp.Compile("^(?:" + o.dnsNameRegex + ")$")
		if err != nil {
			return cfg, static, flagError("dns-name-regex", "is not a valid regular expression: %v", err)
		}
		cfg.DNSNameRegex = re
	}
	if err := cfg.Validate(); err != nil {
		return cfg, static, usageError{fmt.Errorf("policy flags: %w", err)}
	}
	return cfg, static, nil
}

// readCAFile reads a PEM CA bundle named by flag.
func readCAFile(flag, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, flagError(flag, "cannot be read: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, flagError(flag, "holds no PEM certificate: %s", path)
	}
	return pool, nil
}

// clusterCA returns the CA the client trusts for the API server, or nil.
func clusterCA(cfg *rest.Config) *x509.CertPool {
	pem := cfg.CAData
	if len(pem) == 0 && cfg.CAFile != "" {
		pem, _ = os.ReadFile(cfg.CAFile)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil
	}
	return pool
}

// logOptions configure the structured logger.
type logOptions struct {
	format    string
	verbosity int
}

func (o *logOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.format, "log-format", "text", `Log format: "text" or "json".`)
	fs.IntVarP(&o.verbosity, "verbosity", "v", 0, "Log verbosity; higher is chattier.")
}

// logger builds the structured logger. Unlike controller-runtime's
// production preset it never samples: every decision is an audit record, and
// a burst of 2,000 approvals must log 2,000 lines. WithValues is deferred to
// the lines written (deferredValues).
func (o *logOptions) logger() (logr.Logger, error) {
	return o.loggerTo(zapcore.Lock(os.Stderr))
}

// loggerTo is logger writing to w.
func (o *logOptions) loggerTo(w zapcore.WriteSyncer) (logr.Logger, error) {
	if o.verbosity < 0 || o.verbosity > math.MaxInt8 {
		// zap's levels are an int8: -v N is level -N.
		return logr.Logger{}, flagError("verbosity", "must be between 0 and %d, got %d", math.MaxInt8, o.verbosity)
	}
	cfg := uberzap.NewProductionEncoderConfig()
	cfg.TimeKey, cfg.EncodeTime, cfg.EncodeDuration = "ts", zapcore.RFC3339NanoTimeEncoder, zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch o.format {
	case "json":
		enc = zapcore.NewJSONEncoder(cfg)
	case "text":
		cfg.EncodeTime, cfg.EncodeLevel, cfg.ConsoleSeparator = zapcore.RFC3339TimeEncoder, zapcore.CapitalLevelEncoder, " "
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return logr.Logger{}, flagError("log-format", `must be "text" or "json", got %q`, o.format)
	}
	core := zapcore.NewCore(&zap.KubeAwareEncoder{Encoder: enc}, w, zapcore.Level(-int8(o.verbosity)))
	return deferValues(zapr.NewLogger(uberzap.New(core, uberzap.AddStacktrace(zapcore.PanicLevel)))), nil
}

type controllerOptions struct {
	kube   kubeOptions
	policy policyOptions
	log    logOptions

	mode              string
	workers           int
	nodeLimit         int
	nodeWindow        time.Duration
	breakerMax        int
	breakerWindow     time.Duration
	holdRetry         time.Duration
	discoveryInterval time.Duration

	leaderElect   bool
	leaseID       string
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration

	metricsAddr string
	healthAddr  string
	pprofAddr   string

	probeInterval    time.Duration
	probeTimeout     time.Duration
	probeConcurrency int
	kubeletCAFile    string
}

func newControllerCommand() *cobra.Command {
	o := &controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the approver: decide every kubelet serving CSR",
		Long: `Run the csrguard controller. It watches CertificateSigningRequests for signer
kubernetes.io/kubelet-serving and approves, denies or holds each one by the
policy (see 'csrguard explain' and the README). It runs in the cluster, or
out of it with --kubeconfig.`,
		Example: `  # In a pod (leader election on by default):
  csrguard controller --log-format=json
  # From a laptop, deciding nothing, to see what it would do:
  csrguard controller --kubeconfig ~/.kube/config --mode=dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			logger, err := o.log.logger()
			if err != nil {
				return err
			}
			ctrl.SetLogger(logger)
			restCfg, err := o.kube.restConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			if cfg.Monitor.Prober.Roots == nil {
				// The API server's CA (kube-root-ca.crt in a pod): the monitor
				// verifies against it where it signs kubelet-serving certificates.
				cfg.Monitor.ClusterCA = clusterCA(restCfg)
			}
			ctx := log.IntoContext(cmd.Context(), logger)
			return controller.Run(ctx, restCfg, cfg)
		},
	}
	var s flagSections
	o.policy.addFlags(s.section("Policy"))
	fs := s.section("Policy")
	fs.StringVar(&o.mode, "mode", string(approval.Enforce), `What to write: "enforce" approves and denies; "no-deny" approves and leaves the rest pending; "dry-run" writes nothing (Events, logs and metrics only).`)

	fs = s.section("Throughput and limits")
	fs.IntVar(&o.workers, "workers", controller.DefaultWorkers, "CSRs decided in parallel: each mostly waits for its write, so they, not the CPU, set how fast a burst is decided.")
	fs.IntVar(&o.nodeLimit, "node-approval-limit", 10, "Approvals per node within --node-approval-window before further ones are held; 0 disables.")
	fs.DurationVar(&o.nodeWindow, "node-approval-window", time.Hour, "Window of --node-approval-limit.")
	fs.IntVar(&o.breakerMax, "breaker-max-approvals", 0, "Approvals cluster-wide within --breaker-window after which every approval is held and csrguard_breaker_open is 1; 0 disables.")
	fs.DurationVar(&o.breakerWindow, "breaker-window", 10*time.Minute, "Window of --breaker-max-approvals.")
	fs.DurationVar(&o.holdRetry, "hold-retry", 30*time.Second, "How often a held CSR is re-evaluated when no watch event wakes it.")
	fs.DurationVar(&o.discoveryInterval, "discovery-interval", time.Minute, "How often API server addresses and service CIDRs are re-read.")

	fs = s.section("Leader election")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader with a Lease so only one replica decides (default true in a pod, false with a kubeconfig).")
	fs.StringVar(&o.leaseID, "leader-election-id", "csrguard", "Name of the Lease.")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a Lease is valid without renewal.")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader retries renewing before it steps down.")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second, "How often candidates try to acquire or renew the Lease.")

	fs = s.section("Serving")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", `Address of the Prometheus /metrics endpoint; "0" disables it.`)
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081", `Address of /healthz and /readyz; "0" disables them.`)
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", `Address of Go's /debug/pprof profiling endpoints, for performance work; empty or "0" disables them.`)

	fs = s.section("Kubelet monitoring")
	fs.DurationVar(&o.probeInterval, "probe-interval", 3*time.Minute, "How often the leader probes every kubelet's serving certificate with a TLS handshake (jittered by 10%); 0 disables probing.")
	fs.DurationVar(&o.probeTimeout, "probe-timeout", 5*time.Second, "Timeout of one kubelet probe.")
	fs.IntVar(&o.probeConcurrency, "probe-concurrency", 32, "Kubelet probes in flight at once.")
	fs.StringVar(&o.kubeletCAFile, "kubelet-ca-file", "", "PEM bundle of the CA that signs kubelet serving certificates; a kubelet whose certificate does not chain to it is reported as untrusted. Default: the cluster CA, where every issued kubelet-serving certificate chains to it (Talos, kubeadm).")

	o.kube.addControllerFlags(s.section("Kubernetes client"), unlimitedQPS, 600)
	o.log.addFlags(s.section("Logging"))
	s.install(cmd)
	return cmd
}

func (o *controllerOptions) config(cmd *cobra.Command) (controller.Config, error) {
	var cfg controller.Config
	pc, static, err := o.policy.config()
	if err != nil {
		return cfg, err
	}
	mode, err := approval.ParseMode(o.mode)
	if err != nil {
		return cfg, flagError("mode", "%v, got %q", err, o.mode)
	}
	if err := o.kube.validate(); err != nil {
		return cfg, err
	}
	checks := []struct {
		ok   bool
		flag string
		msg  string
		val  any
	}{
		{o.workers >= 1, "workers", "must be >= 1", o.workers},
		{o.nodeLimit >= 0, "node-approval-limit", "must be >= 0", o.nodeLimit},
		{o.nodeWindow > 0, "node-approval-window", "must be > 0", o.nodeWindow},
		{o.breakerMax >= 0, "breaker-max-approvals", "must be >= 0", o.breakerMax},
		{o.breakerWindow > 0, "breaker-window", "must be > 0", o.breakerWindow},
		{o.holdRetry > 0, "hold-retry", "must be > 0", o.holdRetry},
		{o.discoveryInterval > 0, "discovery-interval", "must be > 0", o.discoveryInterval},
		{o.leaseDuration > o.renewDeadline, "leader-election-renew-deadline", fmt.Sprintf("must be shorter than --leader-election-lease-duration (%s)", o.leaseDuration), o.renewDeadline},
		{o.renewDeadline > o.retryPeriod, "leader-election-retry-period", fmt.Sprintf("must be shorter than --leader-election-renew-deadline (%s)", o.renewDeadline), o.retryPeriod},
		{o.retryPeriod > 0, "leader-election-retry-period", "must be > 0", o.retryPeriod},
		{o.probeInterval >= 0, "probe-interval", "must be >= 0", o.probeInterval},
		{o.probeTimeout > 0, "probe-timeout", "must be > 0", o.probeTimeout},
		{o.probeConcurrency >= 1, "probe-concurrency", "must be >= 1", o.probeConcurrency},
	}
	for _, c := range checks {
		if !c.ok {
			return cfg, flagError(c.flag, "%s, got %v", c.msg, c.val)
		}
	}
	leaderElect := o.leaderElect
	if !cmd.Flags().Changed("leader-elect") {
		leaderElect = o.kube.inCluster()
	}
	prober := monitor.Prober{Timeout: o.probeTimeout}
	if o.kubeletCAFile != "" {
		if prober.Roots, err = readCAFile("kubelet-ca-file", o.kubeletCAFile); err != nil {
			return cfg, err
		}
	}
	return controller.Config{
		Monitor: monitor.Config{Interval: o.probeInterval, Concurrency: o.probeConcurrency, Prober: prober},
		Approval: approval.Config{
			Policy: pc, Mode: mode, HoldRetry: o.holdRetry,
			NodeLimit: approval.Limit{Max: o.nodeLimit, Window: o.nodeWindow},
			Breaker:   approval.Limit{Max: o.breakerMax, Window: o.breakerWindow},
		},
		Static: static, DiscoveryInterval: o.discoveryInterval, Workers: o.workers,
		Namespace: o.kube.csrguardNamespace(), LeaderElection: leaderElect, LeaderElectionID: o.leaseID,
		LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod,
		MetricsBindAddress: o.metricsAddr, HealthBindAddress: o.healthAddr, PprofBindAddress: o.pprofAddr,
	}, nil
}
