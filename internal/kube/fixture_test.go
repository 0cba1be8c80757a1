package kube

import (
	"net/netip"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// newDiscovery returns a ClusterDiscovery over reader, which also holds its
// record in namespace csrguard, adding static.
func newDiscovery(reader client.Client, static policy.Cluster, interval time.Duration) *ClusterDiscovery {
	return NewClusterDiscovery(DiscoveryConfig{
		Reader: reader, Store: history.NewStore(reader, reader, "csrguard"), Static: static,
		Interval: interval, Retention: SignerDefaultLifetime,
		Clock: clocktesting.NewFakeClock(t0), Metrics: metrics.New(),
	})
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}
