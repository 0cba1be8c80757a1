package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/csrguard/csrguard/internal/policy"
)

func TestControllerHelp(t *testing.T) {
	offline(t)
	stdout, stderr, err := run(t, "controller", "--help")
	if err != nil {
		t.Fatalf("csrguard controller --help: error = %v", err)
	}
	if stderr != "" {
		t.Errorf("csrguard controller --help wrote to stderr: %q", stderr)
	}
	golden(t, "controller-help.golden", stdout)
}

func TestControllerHelpListsEveryFlag(t *testing.T) {
	offline(t)
	root := New()
	var out strings.Builder
	root.SetOut(&out)
	root.SetArgs([]string{"controller", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatalf("csrguard controller --help: error = %v", err)
	}
	controller, _, err := root.Find([]string{"controller"})
	if err != nil {
		t.Fatal(err)
	}
	help := out.String()
	n := 0
	controller.Flags().VisitAll(func(f *pflag.Flag) {
		// cobra adds --help itself; the sectioned help does not list it.
		if f.Name == "help" {
			return
		}
		n++
		want := "--" + f.Name + " "
		if f.Shorthand != "" {
			want = "-" + f.Shorthand + ", --" + f.Name + " "
		}
		if !strings.Contains(help, want) {
			t.Errorf("controller --help does not list %q", strings.TrimSpace(want))
		}
	})
	if n < 30 {
		t.Errorf("controller has %d flags, want at least 30: is the command wired?", n)
	}
}

func TestControllerBadFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantFlag string // the flag the error must name
	}{
		{"workers_zero", []string{"--workers=0"}, "workers"},
		{"max_expiration_negative", []string{"--max-expiration=-1h"}, "max-expiration"},
		{"max_expiration_zero", []string{"--max-expiration=0"}, "max-expiration"},
		{"max_sans_zero", []string{"--max-sans=0"}, "max-sans"},
		{"max_sans_over_limit", []string{"--max-sans=33"}, "max-sans"},
		{"mode_unknown", []string{"--mode=yolo"}, "mode"},
		{"allowed_node_cidrs_bad_prefix", []string{"--allowed-node-cidrs=10.0.0.0/33"}, "allowed-node-cidrs"},
		{"allowed_node_cidrs_second_bad", []string{"--allowed-node-cidrs=10.0.0.0/8,10.1.0.0/99"}, "allowed-node-cidrs"},
		{"dns_name_regex_invalid", []string{"--dns-name-regex=("}, "dns-name-regex"},
		{"log_format_xml", []string{"--log-format=xml"}, "log-format"},
		{"verbosity_negative", []string{"-v=-1"}, "verbosity"},
		{"kube_api_qps_zero", []string{"--kube-api-qps=0"}, "kube-api-qps"},
		{"kube_api_qps_negative_not_minus_one", []string{"--kube-api-qps=-300"}, "kube-api-qps"},
		{"kube_api_burst_zero", []string{"--kube-api-burst=0"}, "kube-api-burst"},
		{"node_approval_limit_negative", []string{"--node-approval-limit=-1"}, "node-approval-limit"},
		{"node_approval_window_zero", []string{"--node-approval-window=0"}, "node-approval-window"},
		{"breaker_max_approvals_negative", []string{"--breaker-max-approvals=-1"}, "breaker-max-approvals"},
		{"breaker_window_zero", []string{"--breaker-window=0"}, "breaker-window"},
		{"hold_retry_zero", []string{"--hold-retry=0"}, "hold-retry"},
		{"discovery_interval_zero", []string{"--discovery-interval=0"}, "discovery-interval"},
		{"renew_deadline_not_below_lease", []string{"--leader-election-renew-deadline=20s"}, "leader-election-renew-deadline"},
		{"retry_period_not_below_renew_deadline", []string{"--leader-election-retry-period=10s"}, "leader-election-retry-period"},
		{"retry_period_zero", []string{"--leader-election-retry-period=0"}, "leader-election-retry-period"},
		{"address_settle_time_negative", []string{"--address-settle-time=-1s"}, "address-settle-time"},
		{"reserved_cidrs_not_cidr", []string{"--reserved-cidrs=nope"}, "reserved-cidrs"},
		{"service_cidrs_not_cidr", []string{"--service-cidrs=10.96.0.0/12,nope"}, "service-cidrs"},
		{"apiserver_addresses_not_ip", []string{"--apiserver-addresses=nope"}, "apiserver-addresses"},
		{"apiserver_addresses_cidr", []string{"--apiserver-addresses=10.0.0.1/32"}, "apiserver-addresses"},
		{"namespace_invalid", []string{"--namespace=Not_A_Namespace"}, "namespace"},
		{"control_plane_label_kubelet_may_set", []string{"--control-plane-labels=node.kubernetes.io/control-plane"}, "control-plane-labels"},
		{"control_plane_label_foreign_domain", []string{"--control-plane-labels=node-role.kubernetes.io/control-plane,example.com/cp"}, "control-plane-labels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offline(t)
			if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && tc.wantFlag == "leader-election-namespace" {
				t.Skip("running in a pod: the service account namespace is the default")
			}
			args := append([]string{"controller"}, tc.args...)
			stdout, stderr, err := run(t, args...)
			if err == nil {
				t.Fatalf("csrguard %q: error = nil, want one naming --%s", args, tc.wantFlag)
			}
			if !namesFlag(err.Error(), tc.wantFlag) {
				t.Errorf("error = %q, want it to name --%s", err, tc.wantFlag)
			}
			if got, _ := exitCode(t, err); got != 2 {
				t.Errorf("ExitCode(%v) = %d, want 2 (usage)", err, got)
			}
			if stdout != "" || stderr != "" {
				t.Errorf("csrguard %q printed stdout %q, stderr %q; want nothing", args, stdout, stderr)
			}
		})
	}
}

// TestControllerGoodFlags runs the controller with valid flags and no cluster: validation must
// pass, and the command must fail only when it loads the (missing) kubeconfig.
func TestControllerGoodFlags(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		podNamespace string // $POD_NAMESPACE
	}{
		{"defaults", nil, ""},
		{"dry_run", []string{"--mode=dry-run"}, ""},
		{"no_deny_mixed_case", []string{"--mode=No-Deny"}, ""},
		{"limits_disabled", []string{"--node-approval-limit=0", "--breaker-max-approvals=0"}, ""},
		{"cidrs_and_addresses", []string{
			"--allowed-node-cidrs=10.0.0.0/8, 192.168.1.7", "--reserved-cidrs=203.0.113.0/24,fd00::1",
			"--service-cidrs=10.96.0.0/12", "--apiserver-addresses=10.0.0.1,::ffff:10.0.0.2",
		}, ""},
		{"dns_name_regex", []string{`--dns-name-regex=[a-z0-9-]+\.nodes\.example\.com`}, ""},
		{"settle_time_zero", []string{"--address-settle-time=0"}, ""},
		{"leader_elect_with_namespace", []string{"--leader-elect", "--namespace=kube-system"}, ""},
		{"leader_elect_default_namespace", []string{"--leader-elect"}, ""},
		{"rke_control_plane_label", []string{"--control-plane-labels=node-role.kubernetes.io/controlplane=true"}, ""},
		{"no_control_plane_labels", []string{"--control-plane-labels="}, ""},
		{"leader_elect_pod_namespace", []string{"--leader-elect"}, "csrguard-system"},
		{"json_logs", []string{"--log-format=json", "-v=2"}, ""},
		{"kube_api_qps_unlimited", []string{"--kube-api-qps=-1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offline(t)
			if tc.podNamespace != "" {
				t.Setenv("POD_NAMESPACE", tc.podNamespace)
			}
			kubeconfig := filepath.Join(t.TempDir(), "missing-kubeconfig")
			args := append([]string{"controller", "--kubeconfig=" + kubeconfig}, tc.args...)
			_, _, err := run(t, args...)
			if err == nil || !strings.HasPrefix(err.Error(), "load kubeconfig: ") {
				t.Fatalf("csrguard %q: error = %v, want it to fail loading the kubeconfig", args, err)
			}
			if got, _ := exitCode(t, err); got != 3 {
				t.Errorf("ExitCode(%v) = %d, want 3 (could not run)", err, got)
			}
		})
	}
}

// TestControllerInPod checks that in a pod the controller needs no flag: leader election is on
// and the namespace defaults, so the run gets as far as loading the in-cluster configuration.
func TestControllerInPod(t *testing.T) {
	offline(t)
	os.Unsetenv("KUBECONFIG")
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	_, _, err := run(t, "controller")
	if err == nil || !strings.HasPrefix(err.Error(), "load kubeconfig: ") {
		t.Fatalf("csrguard controller in a pod: error = %v, want it to fail loading the in-cluster configuration only", err)
	}
}

func TestPolicyOptionsConfig(t *testing.T) {
	var o policyOptions
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.addFlags(fs)
	err := fs.Parse([]string{
		"--max-expiration=720h", "--max-sans=5", "--cluster-domain=example.internal",
		"--allowed-node-cidrs=10.1.2.3/16, 192.168.1.7,", "--reserved-names=api.example.com",
		"--reserved-cidrs=::ffff:203.0.113.9,::ffff:198.51.100.0/120", "--apiserver-addresses=10.0.0.1,::ffff:10.0.0.2",
		"--service-cidrs=10.96.0.0/12", "--dns-name-regex=node-[0-9]+", "--address-settle-time=30s",
		"--insecure-test-allow-loopback",
	})
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	cfg, static, err := o.config()
	if err != nil {
		t.Fatalf("config() error = %v", err)
	}

	type parsed struct {
		MaxExpiration      time.Duration
		MaxSANs            int
		ClusterDomain      string
		AllowedNodeCIDRs   []string
		ExtraReservedNames []string
		ExtraReservedCIDRs []string
		DNSNameRegex       string
		AddressSettleTime  time.Duration
		Loopback           bool
		APIServerAddresses []string
		ServiceCIDRs       []string
	}
	got := parsed{
		MaxExpiration: cfg.MaxExpiration, MaxSANs: cfg.MaxSANs, ClusterDomain: cfg.ClusterDomain,
		AllowedNodeCIDRs: prefixes(cfg.AllowedNodeCIDRs), ExtraReservedNames: cfg.ExtraReservedNames,
		ExtraReservedCIDRs: prefixes(cfg.ExtraReservedCIDRs), DNSNameRegex: cfg.DNSNameRegex.String(),
		AddressSettleTime: cfg.AddressSettleTime, Loopback: cfg.InsecureAllowLoopback,
		APIServerAddresses: addrs(static.APIServerAddresses), ServiceCIDRs: prefixes(static.ServiceCIDRs),
	}
	want := parsed{
		MaxExpiration: 720 * time.Hour, MaxSANs: 5, ClusterDomain: "example.internal",
		// Masked; a single address is its own /32; empty entries are dropped.
		AllowedNodeCIDRs:   []string{"10.1.0.0/16", "192.168.1.7/32"},
		ExtraReservedNames: []string{"api.example.com"},
		// IPv4-mapped addresses and prefixes are read as IPv4.
		ExtraReservedCIDRs: []string{"203.0.113.9/32", "198.51.100.0/24"},
		// Anchored, so the pattern must match a whole name.
		DNSNameRegex:       "^(?:node-[0-9]+)$",
		AddressSettleTime:  30 * time.Second,
		Loopback:           true,
		APIServerAddresses: []string{"10.0.0.1", "10.0.0.2"},
		ServiceCIDRs:       []string{"10.96.0.0/12"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("config() mismatch (-got +want):\n%s", diff)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("config() returned a config that does not validate: %v", err)
	}
}

func TestPolicyOptionsDefaults(t *testing.T) {
	var o policyOptions
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg, static, err := o.config()
	if err != nil {
		t.Fatalf("config() error = %v", err)
	}
	// Without flags the controller decides exactly as the policy's defaults say.
	if diff := cmp.Diff(cfg, policy.DefaultConfig(), cmp.Comparer(func(a, b *regexp.Regexp) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("config() mismatch (-got +want):\n%s", diff)
	}
	if len(static.APIServerAddresses)+len(static.ServiceCIDRs) != 0 {
		t.Errorf("static cluster = %+v, want none", static)
	}
}

func prefixes(ps []netip.Prefix) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return s
}

func addrs(as []netip.Addr) []string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return s
}
