package diagnose

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/policy"
)

func outcomes(r PreflightReport) map[string]string {
	got := map[string]string{}
	for _, n := range r.Nodes {
		got[n.Node] = n.Outcome
	}
	return got
}

func TestPreflight(t *testing.T) {
	cfg := policy.DefaultConfig()
	cluster := policy.Cluster{ServiceCIDRs: nil}
	tests := []struct {
		name   string
		snap   func() Snapshot
		rbac   *PreflightCheck
		want   map[string]string
		wantOK bool
	}{
		{name: "healthy", snap: func() Snapshot { return healthy(t, "Talos (v1.11.5)") }, wantOK: true,
			want: map[string]string{"node-a": OutcomeIssued, "node-b": OutcomeIssued, "node-c": OutcomeIssued}},
		{name: "no_approver", snap: func() Snapshot { s := healthy(t, "Debian"); s.Approvers = nil; return s },
			want: map[string]string{"node-a": OutcomePending, "node-b": OutcomePending, "node-c": OutcomePending}},
		{name: "rbac_missing", snap: func() Snapshot { return healthy(t, "Debian") }, rbac: &PreflightCheck{Name: "rbac", Detail: "may not approve"},
			want: map[string]string{"node-a": OutcomeIssued, "node-b": OutcomeIssued, "node-c": OutcomeIssued}},
		{name: "reserved_shared_and_no_ip", snap: func() Snapshot {
			s := healthy(t, "Debian")
			s.Nodes[1].Status.Addresses = append(s.Nodes[1].Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "169.254.169.254"})
			s.Nodes[2].Status.Addresses = append(s.Nodes[2].Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"})
			s.Nodes = append(s.Nodes, newNode("no-ip", "", "Debian", false))
			s.Nodes[3].Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "no-ip"}}
			return s
		}, want: map[string]string{"node-a": OutcomeDenied, "node-b": OutcomeDenied, "node-c": OutcomeDenied, "no-ip": OutcomeNoRequest}},
		// A Node that registered a moment ago with an address another Node
		// owns is told its final verdict, not the settle-time hold before it.
		{name: "new_node_reports_owned_address", snap: func() Snapshot {
			s := healthy(t, "Debian")
			s.Claims = map[string]policy.Claim{"10.0.0.2": {Node: "node-b", Since: now.Add(-time.Hour)}}
			s.Nodes = append(s.Nodes, newNode("node-d", "10.0.0.2", "Debian", false))
			s.Nodes[3].CreationTimestamp = metav1.NewTime(now.Add(-time.Second))
			return s
		}, want: map[string]string{"node-a": OutcomeIssued, "node-b": OutcomeIssued, "node-c": OutcomeIssued, "node-d": OutcomeDenied}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.snap()
			s.Cluster = cluster
			r, err := Preflight(t.Context(), s, cfg, newKey(), tc.rbac)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(outcomes(r), tc.want); diff != "" {
				t.Errorf("outcomes (-got +want):\n%s", diff)
			}
			if r.OK != tc.wantOK {
				t.Errorf("OK = %v, want %v", r.OK, tc.wantOK)
			}
		})
	}
}

// TestPreflightGolden locks in the report of a cluster with no approver;
// the CLI prints this same file (internal/cli's preflight tests read it).
func TestPreflightGolden(t *testing.T) {
	s := healthy(t, "Talos (v1.11.5)")
	s.Approvers = nil
	r, err := Preflight(t.Context(), s, policy.DefaultConfig(), newKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "preflight-no-approver.json.golden", asJSON(t, r))
}

// TestPreflightNoServiceCIDRAPI: without ServiceCIDR objects and without
// --service-cidrs, preflight asks for the flag; it does not fail for it.
func TestPreflightNoServiceCIDRAPI(t *testing.T) {
	s := healthy(t, "Debian")
	s.NoServiceCIDRAPI = true
	r, err := Preflight(t.Context(), s, hardened(), newKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"The service range is unknown: the API server serves no ServiceCIDR objects and --service-cidrs is not set: " +
		"helm upgrade csrguard <chart> --reuse-values --set 'policy.serviceCIDRs={<range>}'; or run csrguard controller (and doctor, preflight) with --service-cidrs=<range>"}
	if diff := cmp.Diff(r.Suggestions, want); diff != "" {
		t.Errorf("suggestions (-got +want):\n%s", diff)
	}
	if !r.OK {
		t.Errorf("OK = false, want true: a suggestion does not fail preflight")
	}
}
