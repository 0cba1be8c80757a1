package policy_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/policy"
)

func TestAggregate(t *testing.T) {
	p := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name string
		in   []netip.Prefix
		want []netip.Prefix
	}{
		{"siblings_cascade", p("10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"), p("10.0.0.0/22")},
		{"not_siblings", p("10.0.1.0/24", "10.0.2.0/24"), p("10.0.1.0/24", "10.0.2.0/24")},
		{"contained", p("10.0.0.0/16", "10.0.5.0/24"), p("10.0.0.0/16")},
		{"duplicates", p("10.0.0.0/24", "10.0.0.0/24"), p("10.0.0.0/24")},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(policy.Aggregate(tt.in), tt.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Aggregate (-got +want):\n%s", diff)
			}
		})
	}
}
