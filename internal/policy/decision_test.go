package policy_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// TestHoldUntil: a hold says when it ends, if it knows, so the controller decides again then
// rather than at its next periodic retry.
func TestHoldUntil(t *testing.T) {
	settle := policy.DefaultConfig().AddressSettleTime
	now := csrtest.Created.Add(10 * time.Second)
	tests := []struct {
		name  string
		opts  []csrtest.Option
		facts func(*fakeFacts)
		want  time.Time
	}{
		{name: "settle_time_from_the_request", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")},
			want: csrtest.Created.Add(settle)},
		{name: "settle_time_from_a_later_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, facts: func(f *fakeFacts) {
			f.nodes["node-a"].Created = now.Add(-time.Second)
		}, want: now.Add(-time.Second).Add(settle)},
		{name: "released_claim_ends", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.20")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=10.0.0.20")
			f.claims["10.0.0.20"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-24 * time.Hour), Released: csrtest.Created.Add(-30 * time.Second)}
		}, want: csrtest.Created.Add(-30 * time.Second).Add(settle)},
		{name: "node_not_found_has_no_known_end", opts: []csrtest.Option{csrtest.Node("node-c"), csrtest.IPAddresses("10.0.0.12")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := defaultFacts()
			if tt.facts != nil {
				tt.facts(facts)
			}
			req := servingcsr.FromCSR(csrtest.New(t, tt.opts...))
			d, err := policy.Evaluate(context.Background(), policy.DefaultConfig(), req, facts, now)
			if err != nil {
				t.Fatal(err)
			}
			if d.Verdict != policy.Hold {
				t.Fatalf("verdict %v (%s), want Hold", d.Verdict, d.Message)
			}
			if !d.Until.Equal(tt.want) {
				t.Errorf("Until = %v, want %v (%s)", d.Until, tt.want, d.Message)
			}
		})
	}
}

// TestEvaluateChecks pins the trace explain prints: every check, its outcome and reason.
func TestEvaluateChecks(t *testing.T) {
	type row struct {
		Check   string
		Outcome policy.Outcome
		Reason  policy.Reason
	}
	ids := []string{"signer", "requester", "request-encoding", "subject", "san-types", "usages", "key", "expiration", "reserved", "apiserver", "allowed-cidrs", "dns-regex", "node-exists", "san-ownership"}
	// trace lists every check as passed except those in failed and skipped.
	trace := func(failed map[string]policy.Reason, skipped ...string) []row {
		var rows []row
		for _, id := range ids {
			r := row{Check: id, Outcome: policy.Pass}
			if reason, ok := failed[id]; ok {
				r = row{Check: id, Outcome: policy.Fail, Reason: reason}
			}
			if slices.Contains(skipped, id) {
				r.Outcome = policy.Skipped
			}
			rows = append(rows, r)
		}
		return rows
	}

	tests := []struct {
		name string
		opts []csrtest.Option
		want []row
	}{
		{name: "approved", want: trace(nil, "allowed-cidrs", "dns-regex")},
		{name: "malformed_request", opts: []csrtest.Option{csrtest.PEM([]byte("garbage"))}, want: trace(
			map[string]policy.Reason{"request-encoding": policy.MalformedRequest},
			"subject", "san-types", "usages", "key", "reserved", "apiserver", "allowed-cidrs", "dns-regex", "san-ownership")},
		{name: "not_a_node", opts: []csrtest.Option{csrtest.Username("alice")}, want: trace(
			map[string]policy.Reason{"requester": policy.RequesterNotNode, "subject": policy.SubjectMismatch},
			"allowed-cidrs", "dns-regex", "node-exists", "san-ownership")},
		{name: "node_not_found", opts: []csrtest.Option{csrtest.Node("node-c")}, want: trace(
			map[string]policy.Reason{"node-exists": policy.NodeNotFound},
			"allowed-cidrs", "dns-regex", "san-ownership")},
		{name: "several_failures", opts: []csrtest.Option{csrtest.DNSNames("kubernetes.default.svc.")}, want: trace(
			map[string]policy.Reason{"san-types": policy.DNSNameInvalid, "reserved": policy.ReservedName, "san-ownership": policy.SANNotOnNode},
			"allowed-cidrs", "dns-regex")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := servingcsr.FromCSR(csrtest.New(t, tt.opts...))
			d, err := policy.Evaluate(context.Background(), policy.DefaultConfig(), req, defaultFacts(), req.Created.Add(time.Hour))
			if err != nil {
				t.Fatalf("Evaluate() error = %v", err)
			}
			var got []row
			for _, c := range d.Checks {
				got = append(got, row{Check: c.Check, Outcome: c.Outcome, Reason: c.Reason})
				if (c.Outcome == policy.Fail) != (c.Verdict != 0) {
					t.Errorf("check %s: outcome %v with verdict %v", c.Check, c.Outcome, c.Verdict)
				}
				if c.Message == "" {
					t.Errorf("check %s has no message", c.Check)
				}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Evaluate() checks mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestEvaluateMessage(t *testing.T) {
	tests := []struct {
		name string
		opts []csrtest.Option
		age  time.Duration
		want string
	}{
		{name: "approved", age: time.Hour, want: "all checks passed"},
		{name: "ip_not_on_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, age: time.Hour,
			want: `san-ownership: IP SAN 10.0.0.99 is not an address of node "node-a"`},
		{name: "ip_not_on_node_unsettled", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, age: time.Second,
			want: `san-ownership: IP SAN 10.0.0.99 is not an address of node "node-a"; holding until the request is 1m0s old in case node addresses lag`},
		{name: "dns_not_on_node", opts: []csrtest.Option{csrtest.DNSNames("Evil.example.com")}, age: time.Hour,
			want: `san-ownership: DNS SAN "evil.example.com" is not an address of node "node-a"`},
		{name: "reserved_address", opts: []csrtest.Option{csrtest.IPAddresses("10.96.0.1")}, age: time.Hour,
			want: `reserved: IP SAN 10.96.0.1 is a Service IP`},
		{name: "reserved_name", opts: []csrtest.Option{csrtest.DNSNames("kubernetes.default.svc")}, age: time.Hour,
			want: `reserved: DNS SAN "kubernetes.default.svc" is the API server's in-cluster name`},
		{name: "other_name", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, otherNameGN(t)))}, age: time.Hour,
			want: `san-types: SAN of type otherName is not allowed`},
		{name: "node_not_found", opts: []csrtest.Option{csrtest.Node("node-c")}, age: time.Hour,
			want: `node-exists: node "node-c" does not exist (yet)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := servingcsr.FromCSR(csrtest.New(t, tt.opts...))
			d, err := policy.Evaluate(context.Background(), policy.DefaultConfig(), req, defaultFacts(), req.Created.Add(tt.age))
			if err != nil {
				t.Fatalf("Evaluate() error = %v", err)
			}
			if d.Message != tt.want {
				t.Errorf("Evaluate() message = %q, want %q", d.Message, tt.want)
			}
		})
	}
}

func TestEvaluateError(t *testing.T) {
	errLookup := errors.New("cache not synced")
	tests := []struct {
		name    string
		opts    []csrtest.Option
		cfg     func(*policy.Config)
		facts   func(*fakeFacts)
		wantErr error
	}{
		{name: "node_lookup", facts: func(f *fakeFacts) { f.nodeErr = errLookup }, wantErr: errLookup},
		{name: "address_lookup", facts: func(f *fakeFacts) { f.addressErr = errLookup }, wantErr: errLookup},
		{name: "cluster_lookup", facts: func(f *fakeFacts) { f.clusterErr = errLookup }, wantErr: errLookup},
		{name: "claim_lookup", facts: func(f *fakeFacts) { f.claimErr = errLookup }, wantErr: errLookup},
		{name: "namespace_lookup", opts: []csrtest.Option{csrtest.DNSNames("node-a.lab")}, facts: func(f *fakeFacts) { f.namespaceErr = errLookup }, wantErr: errLookup},
		// Checks keep running after a deny, so a failed lookup still leaves the request undecided.
		{name: "node_lookup_after_deny", opts: []csrtest.Option{csrtest.PEM([]byte("garbage"))}, facts: func(f *fakeFacts) { f.nodeErr = errLookup }, wantErr: errLookup},
		{name: "invalid_config", cfg: func(c *policy.Config) { c.MaxExpiration = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := servingcsr.FromCSR(csrtest.New(t, tt.opts...))
			cfg := policy.DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			facts := defaultFacts()
			if tt.facts != nil {
				tt.facts(facts)
			}
			got, err := policy.Evaluate(context.Background(), cfg, req, facts, req.Created.Add(time.Hour))
			if err == nil {
				t.Fatalf("Evaluate() = %+v, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Evaluate() error = %v, want it to wrap %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(got, policy.Decision{}); diff != "" {
				t.Errorf("Evaluate() returned a decision with its error (-got +want):\n%s", diff)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		cfg       func(*policy.Config)
		wantField string // "" means valid
	}{
		{name: "default"},
		{name: "max_expiration_zero", cfg: func(c *policy.Config) { c.MaxExpiration = 0 }, wantField: "MaxExpiration"},
		{name: "max_expiration_negative", cfg: func(c *policy.Config) { c.MaxExpiration = -time.Hour }, wantField: "MaxExpiration"},
		{name: "max_sans_zero", cfg: func(c *policy.Config) { c.MaxSANs = 0 }, wantField: "MaxSANs"},
		{name: "max_sans_over_limit", cfg: func(c *policy.Config) { c.MaxSANs = policy.MaxSANsLimit + 1 }, wantField: "MaxSANs"},
		{name: "cluster_domain_empty", cfg: func(c *policy.Config) { c.ClusterDomain = "" }, wantField: "ClusterDomain"},
		{name: "cluster_domain_trailing_dot", cfg: func(c *policy.Config) { c.ClusterDomain = "cluster.local." }, wantField: "ClusterDomain"},
		{name: "cluster_domain_uppercase", cfg: func(c *policy.Config) { c.ClusterDomain = "Cluster.Local" }, wantField: "ClusterDomain"},
		{name: "settle_time_negative", cfg: func(c *policy.Config) { c.AddressSettleTime = -time.Second }, wantField: "AddressSettleTime"},
		{name: "settle_time_zero", cfg: func(c *policy.Config) { c.AddressSettleTime = 0 }},
		{name: "extra_reserved_name_empty", cfg: func(c *policy.Config) { c.ExtraReservedNames = []string{""} }, wantField: "ExtraReservedNames"},
		{name: "allowed_cidr_invalid", cfg: func(c *policy.Config) { c.AllowedNodeCIDRs = []netip.Prefix{{}} }, wantField: "AllowedNodeCIDRs"},
		{name: "extra_reserved_cidr_invalid", cfg: func(c *policy.Config) { c.ExtraReservedCIDRs = []netip.Prefix{{}} }, wantField: "ExtraReservedCIDRs"},
		{name: "control_plane_labels_none", cfg: func(c *policy.Config) { c.ControlPlaneLabels = nil }},
		{name: "control_plane_label_rke", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"node-role.kubernetes.io/controlplane=true"} }},
		{name: "control_plane_label_node_restriction", cfg: func(c *policy.Config) {
			c.ControlPlaneLabels = []string{"node-restriction.kubernetes.io/control-plane"}
		}},
		{name: "control_plane_label_k8s_io", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"example.k8s.io/control-plane"} }},
		// Labels a kubelet may set on itself cannot mark control-plane nodes.
		{name: "control_plane_label_foreign_domain", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"example.com/control-plane"} }, wantField: "ControlPlaneLabels"},
		{name: "control_plane_label_unprefixed", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"control-plane"} }, wantField: "ControlPlaneLabels"},
		{name: "control_plane_label_kubelet_namespace", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"node.kubernetes.io/control-plane"} }, wantField: "ControlPlaneLabels"},
		{name: "control_plane_label_kubelet_subdomain", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"role.kubelet.kubernetes.io/cp"} }, wantField: "ControlPlaneLabels"},
		{name: "control_plane_label_hostname", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"kubernetes.io/hostname=cp-1"} }, wantField: "ControlPlaneLabels"},
		{name: "control_plane_label_bad_key", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"node-role.kubernetes.io/"} }, wantField: "ControlPlaneLabels"},
		{name: "control_plane_label_bad_value", cfg: func(c *policy.Config) { c.ControlPlaneLabels = []string{"node-role.kubernetes.io/cp=a b"} }, wantField: "ControlPlaneLabels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := policy.DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			err := cfg.Validate()
			if (err != nil) != (tt.wantField != "") || (err != nil && !strings.HasPrefix(err.Error(), tt.wantField+" ")) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.wantField)
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	tests := []struct {
		name string
		v    policy.Verdict
		want string
	}{
		{name: "approve", v: policy.Approve, want: "Approve"},
		{name: "deny", v: policy.Deny, want: "Deny"},
		{name: "hold", v: policy.Hold, want: "Hold"},
		{name: "zero", v: 0, want: "Verdict(0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
