// Package storm runs csrguard through a fault in the middle of a CSR storm, on
// a local control plane (test/controlplane), and checks what every such run
// must leave behind. `make bench-faults` (test/cmd/bench --fault) and the e2e
// test TestFaultsMidStorm both use it, so the bench at N=2000 and the test at
// a small N inject the same faults and apply the same checks.
//
// A run registers Nodes (each as the node itself), files one kubelet-serving
// CSR per node and, for one node in HostileEvery, a hostile CSR first — for a
// neighbour's address or name, a reserved name or address, or an address no
// node has — each with the node's own client certificate, at a steady rate
// and retrying what the API server could not take, as kubelets do. Once a
// third are filed and csrguard has approved some, it injects one Fault and
// records when the fault healed. Then it waits, with a deadline, until every
// CSR is decided, and Check applies the invariants to the API server's copy:
// every legitimate CSR Approved and issued, no hostile CSR approved (each
// denied), and no CSR with two conflicting conditions.
//
// The package owns the storm, the faults and the checks; the control plane
// and its processes are test/controlplane's, and starting csrguard replicas is
// the caller's (the e2e helpers or the bench), with ReplicaFlags.
package storm

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/csrguard/csrguard/test/controlplane"
)

// Fault is one fault injected in the middle of a storm.
type Fault string

// The faults, in the order "all" runs them.
const (
	// APIServerRestart stops kube-apiserver (SIGTERM) and starts it again;
	// healed once it is ready.
	APIServerRestart Fault = "apiserver-restart"
	// EtcdRestart kills etcd (SIGKILL) and starts it again on its data;
	// healed once etcd and the API server are ready.
	EtcdRestart Fault = "etcd-restart"
	// LeaderKill SIGKILLs the leading csrguard replica: it cannot release its
	// Lease. Healed once another replica leads.
	LeaderKill Fault = "leader-kill"
	// LeaderPause SIGSTOPs the leading replica until its Lease has expired
	// and another replica leads, then resumes it (SIGCONT). Healed once the
	// other leads; the resumed one must step down and exit.
	LeaderPause Fault = "leader-pause"
	// WatchExpiry compacts etcd's history and cuts every client's
	// connections: watches resume from a compacted resourceVersion, end
	// with 410 Gone, and the informers list again. Healed at once.
	WatchExpiry Fault = "watch-expiry"
)

// Faults are all the faults, in the order "all" runs them.
var Faults = []Fault{APIServerRestart, EtcdRestart, LeaderKill, LeaderPause, WatchExpiry}

// ParseFaults parses a comma-separated list of fault names, or "all".
func ParseFaults(s string) ([]Fault, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(Faults), nil
	}
	var out []Fault
	for name := range strings.SplitSeq(s, ",") {
		f := Fault(strings.TrimSpace(name))
		if !slices.Contains(Faults, f) {
			return nil, fmt.Errorf("unknown fault %q: want all or a list of %s", f, joinFaults(Faults))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

func joinFaults(fs []Fault) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

// watchCacheOff makes the API server serve CSR and Node watches from etcd
// rather than from its watch cache. Only then does an etcd compaction expire
// a watch at once; behind the cache the same 410 Gone comes once a client has
// been away for longer than the cache's window (minutes), or after an API
// server restart.
const watchCacheOff = "--watch-cache-sizes=certificatesigningrequests.certificates.k8s.io#0,nodes#0"

// ControlPlane returns opts with what the fault needs of the control plane:
// for WatchExpiry a proxy whose connections it can cut, and no watch cache
// for CSRs and Nodes.
func (f Fault) ControlPlane(opts controlplane.Options) controlplane.Options {
	if f == WatchExpiry {
		opts.Proxy = true
		opts.APIServerFlags = append(slices.Clone(opts.APIServerFlags), watchCacheOff)
	}
	return opts
}

// Namespace is where the replicas keep their Lease and records; the caller
// creates it before starting them.
const Namespace = "csrguard"

// LeaseName is the name of the replicas' Lease, csrguard's default
// --leader-election-id.
const LeaseName = "csrguard"

// Lease is csrguard's leader election timing; the zero value keeps
// csrguard's defaults (15s lease, 10s renew deadline, 2s retry).
type Lease struct {
	Duration, RenewDeadline, RetryPeriod time.Duration
}

// ShortLease is the timing the e2e test uses, so that a killed leader's
// Lease runs out in seconds.
var ShortLease = Lease{Duration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}

// ReplicaFlags are the flags every csrguard replica of a storm gets after the
// caller's own: leader election in Namespace with lease timing l; a 3s
// address settle time, so that hostile CSRs for addresses their node does not
// have are denied seconds after they are filed rather than after a minute;
// and no kubelet probes (the storm's nodes run no kubelets).
func ReplicaFlags(l Lease) []string {
	flags := []string{"--leader-elect=true", "--namespace=" + Namespace, "--address-settle-time=3s", "--probe-interval=0"}
	if l.Duration > 0 {
		flags = append(flags,
			"--leader-election-lease-duration="+l.Duration.String(),
			"--leader-election-renew-deadline="+l.RenewDeadline.String(),
			"--leader-election-retry-period="+l.RetryPeriod.String())
	}
	return flags
}

// Replica is one running csrguard replica, started by the caller with
// ReplicaFlags.
type Replica struct {
	Name    string
	Process *controlplane.Process
	// Metrics is the URL of its /metrics; Log the file it logs to.
	Metrics, Log string
}

// Options configure a Run.
type Options struct {
	// Nodes is how many Nodes register and file a legitimate CSR.
	Nodes int
	// HostileEvery is how many Nodes there are per hostile CSR; default 10.
	HostileEvery int
	// Rate is how many CSRs are filed per second, in all; default 100. A
	// steady rate keeps CSRs arriving before, during and after the fault.
	Rate float64
	// Clients are the goroutines registering Nodes and filing CSRs; default 16.
	Clients int
	// Timeout bounds each wait: for the trigger, for the fault to heal, and
	// for every CSR to be decided after it healed; default 3m.
	Timeout time.Duration
	// Logf reports progress; default discards.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	if o.HostileEvery <= 0 {
		o.HostileEvery = 10
	}
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Clients <= 0 {
		o.Clients = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}
