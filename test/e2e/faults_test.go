package e2e

import (
	"testing"
	"time"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/storm"
)

// TestFaultsMidStorm: while 40 nodes file their kubelets' CSRs, and one in ten
// also a hostile CSR with its own credentials, the API server restarts, or
// the leading one of two csrguard replicas is SIGKILLed. After each, every
// legitimate CSR is approved and issued, no hostile one is approved, and no
// CSR has conflicting conditions: the checks of `make bench-faults`
// (test/storm), at a small N.
func TestFaultsMidStorm(t *testing.T) {
	for _, fault := range []storm.Fault{storm.APIServerRestart, storm.LeaderKill} {
		t.Run(string(fault), func(t *testing.T) {
			ctx := controlplane.Deadline(t, 2*time.Minute)
			c := newCluster(t, fault.ControlPlane(controlplane.Options{}))
			var replicas []storm.Replica
			for _, name := range []string{"replica-a", "replica-b"} {
				g := c.startCSRGuard(ctx, name, false, storm.ReplicaFlags(storm.ShortLease)...)
				replicas = append(replicas, storm.Replica{Name: name, Process: g.Process, Metrics: g.metrics, Log: g.log})
			}
			r, err := storm.Run(ctx, c.cp, replicas, fault, storm.Options{Nodes: 40, Rate: 20, Timeout: time.Minute, Logf: t.Logf})
			t.Log(r)
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
