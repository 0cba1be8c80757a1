package history

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/policy"
)

// TestClaimsChangedShards: Claims tell the Keeper which claim ConfigMaps changed — all after
// Sync, then only the shard of the Node whose claims moved — and copy only the claims of the
// shards asked for, so that a change to one Node encodes one ConfigMap's claims, not all.
func TestClaimsChangedShards(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	c := NewClaims(time.Minute)
	nodes := map[string][]string{}
	for i := range 64 {
		nodes[fmt.Sprintf("node-%02d", i)] = []string{fmt.Sprintf("10.0.1.%d", i)}
	}
	c.Sync(nil, nodes, now)
	if got := c.takeChanged(); got != allShards {
		t.Fatalf("takeChanged() after Sync = %016b, want every shard", got)
	}
	if got := c.takeChanged(); got != 0 {
		t.Fatalf("takeChanged() again = %016b, want none", got)
	}
	c.SetNode("node-07", []string{"10.0.1.7"}, now) // no change
	if got := c.takeChanged(); got != 0 {
		t.Errorf("takeChanged() after a Node reported what it did = %016b, want none", got)
	}
	c.SetNode("node-07", []string{"10.0.1.7", "10.0.2.7"}, now) // a new address: a new claim
	want := shardSet(1) << shard("node-07")
	if got := c.takeChanged(); got != want {
		t.Errorf("takeChanged() after node-07 gained an address = %016b, want %016b", got, want)
	}
	snap := c.snapshotShards(want)
	for key, cl := range snap {
		if shard(cl.Node) != shard("node-07") {
			t.Errorf("snapshotShards(node-07's) holds %s of %s, kept in another ConfigMap", key, cl.Node)
		}
	}
	if snap["10.0.2.7"].Node != "node-07" || snap["10.0.1.7"].Node != "node-07" {
		t.Errorf("snapshotShards(node-07's) = %v, want node-07's two claims among them", snap)
	}
	all, _ := c.Snapshot()
	fromShards := map[string]policy.Claim{}
	for i := range ClaimShards {
		maps.Copy(fromShards, c.snapshotShards(1<<i))
	}
	if !maps.Equal(all, fromShards) {
		t.Errorf("the shards' snapshots together = %v, want Snapshot() = %v", fromShards, all)
	}

	// Released, then ended: both change node-07's shard only.
	c.SetNode("node-07", []string{"10.0.1.7"}, now)
	if got := c.takeChanged(); got != want {
		t.Errorf("takeChanged() after node-07 dropped an address = %016b, want %016b", got, want)
	}
	c.Expire(now.Add(time.Minute))
	if got := c.takeChanged(); got != want {
		t.Errorf("takeChanged() after node-07's released claim ended = %016b, want %016b", got, want)
	}
	c.DeleteNode("node-08", now)
	if got, want := c.takeChanged(), shardSet(1)<<shard("node-08"); got != want {
		t.Errorf("takeChanged() after node-08 was deleted = %016b, want %016b", got, want)
	}
}

// TestStoreDue: a claim ConfigMap whose write failed is not due until its backoff has passed,
// so the Keeper neither copies nor encodes its claims meanwhile.
func TestStoreDue(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
			return errors.New("injected failure")
		},
	}).Build()
	s := NewStore(c, c, "csrguard")
	claims := map[string]policy.Claim{"10.0.1.7": {Node: "node-07", Since: now}}
	seven := shardSet(1) << shard("node-07")
	left, err := s.saveShards(t.Context(), claims, allShards, now)
	if left != seven || err == nil {
		t.Fatalf("saveShards() = %016b, %v; want node-07's shard left and an error", left, err)
	}
	if got := s.due(allShards, now.Add(999*time.Millisecond)); got != allShards&^seven {
		t.Errorf("due() within the backoff = %016b, want all but %016b", got, seven)
	}
	if got := s.due(allShards, now.Add(time.Second)); got != allShards {
		t.Errorf("due() after the backoff = %016b, want all", got)
	}
	left, err = s.saveShards(t.Context(), claims, seven, now.Add(time.Second))
	if left != seven || err == nil {
		t.Fatalf("saveShards() again = %016b, %v; want still left", left, err)
	}
	if got := s.due(seven, now.Add(2*time.Second)); got != 0 {
		t.Errorf("due() 1 s after the second failure = %016b, want none: the backoff doubled", got)
	}
	if got := slices.Collect(maps.Keys(s.backoff)); len(got) != 1 {
		t.Errorf("backoff kept for %v, want node-07's ConfigMap only", got)
	}
}
