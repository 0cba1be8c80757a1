package history_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
)

// storeOf returns a synced Node store of objs.
func storeOf(objs ...*corev1.Node) *nodes.Store { return nodes.Of(nil, objs...) }

// waitSynced waits for the keeper to have synced claims with the Nodes: from then on a change to
// the store reaches the claims before the change returns.
func waitSynced(t *testing.T, claims *history.Claims) {
	t.Helper()
	waitFor(t, "the claims to sync", func() bool { _, _, synced := claims.Get(""); return synced }, func() string { return "" })
}

func nodeWith(name string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

// TestKeeper runs the Keeper over a recorded claim and a squatter that came
// while csrguard was down: the record wins; a deleted Node's claims are
// released, a new Node claims its addresses; changes move claims; nothing is
// written before this replica leads; once it leads the record follows; a claim that
// runs out passes to the new holder, who is requeued.
func TestKeeper(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	records := fake.NewClientBuilder().Build()
	store := history.NewStore(records, records, "csrguard")
	if _, err := store.SaveClaims(ctx, map[string]policy.Claim{"10.0.0.1": {Node: "owner", Since: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	nodes := storeOf(nodeWith("owner", "10.0.0.1"), nodeWith("squatter", "10.0.0.2", "10.0.0.1"), nodeWith("departed", "10.0.0.3"))
	clock := clocktesting.NewFakeClock(at(3600))
	claims := history.NewClaims(time.Minute)
	elected := make(chan struct{})
	var mu sync.Mutex
	var gained []string
	errorsTotal := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors_total", Help: "Errors of the keeper under test."})
	keeper := history.NewKeeper(claims, history.NewStore(records, records, "csrguard"), nodes, clock, elected,
		func(n []string) { mu.Lock(); gained = append(gained, n...); mu.Unlock() }, errorsTotal)
	state := func() string {
		snap, _ := claims.Snapshot()
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf(": claims %v, gained %v, now %v", snap, gained, clock.Now())
	}
	done := make(chan error)
	go func() { done <- keeper.Start(ctx) }()

	waitSynced(t, claims)
	if c, ok, synced := claims.Get("10.0.0.1"); !synced || !ok || c.Node != "owner" || !c.Since.Equal(t0) {
		t.Fatalf("Get(10.0.0.1) = %v, %v, %v; want the recorded owner", c, ok, synced)
	}
	if c, _, _ := claims.Get("10.0.0.2"); c.Node != "squatter" {
		t.Errorf("Get(10.0.0.2) = %v, want the squatter's own address claimed by it", c)
	}
	// A Node deleted releases its claims; one created claims its addresses.
	if err := nodes.Delete(nodeWith("departed")); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := claims.Get("10.0.0.3"); c.Node != "departed" || c.Released.IsZero() {
		t.Errorf("Get(10.0.0.3) = %v, want the deleted Node's claim released", c)
	}
	if err := nodes.Add(nodeWith("a-late", "10.0.0.50")); err != nil {
		t.Fatal(err)
	}
	if c, ok, _ := claims.Get("10.0.0.50"); !ok || c.Node != "a-late" || !c.Released.IsZero() {
		t.Errorf("Get(10.0.0.50) = %v, %v; want a live claim of the Node created", c, ok)
	}

	// The owner moves away; the squatter then alone reports the address.
	if err := nodes.Update(nodeWith("owner", "10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := claims.Get("10.0.0.1"); c.Released.IsZero() {
		t.Errorf("Get(10.0.0.1) = %v after the owner stopped reporting it, want released", c)
	}
	// Not leading: nothing written yet.
	recorded, _, _ := store.LoadClaims(ctx)
	if _, ok := recorded["10.0.0.9"]; ok {
		t.Error("a standby wrote claims")
	}
	// The previous leader wrote, after this replica loaded the claims, a claim in a shard where
	// this replica holds none (a Node it saw come and go, say). Elected, this replica must
	// write that shard too, though it holds what it loaded there: nothing.
	ghost := nodeInOtherShard(t, "owner", "squatter", "departed", "a-late")
	if _, err := history.NewStore(records, records, "csrguard").SaveClaims(ctx, map[string]policy.Claim{"10.0.0.77": {Node: ghost, Since: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	close(elected)
	waitFor(t, "the leader to save the claims", func() bool {
		recorded, _, _ := store.LoadClaims(ctx)
		_, stale := recorded["10.0.0.77"]
		return recorded["10.0.0.9"].Node == "owner" && !recorded["10.0.0.1"].Released.IsZero() && !stale
	}, state)
	// The released claim runs out: the squatter, now the only one to report
	// the address, gets it and its CSRs are decided again.
	waitFor(t, "the claim to pass to the squatter", func() bool {
		clock.Step(5 * time.Second) // the keeper's timers fire as time passes
		c, _, _ := claims.Get("10.0.0.1")
		mu.Lock()
		defer mu.Unlock()
		return c.Node == "squatter" && len(gained) == 1 && gained[0] == "squatter"
	}, state)
	// Someone deletes the claim ConfigMaps: the leader, its claims unchanged, writes them
	// again within RewriteClaimsEvery, or they would be lost at its next restart.
	for _, name := range history.ClaimConfigMaps() {
		if err := client.IgnoreNotFound(records.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "csrguard", Name: name}})); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the leader to write the deleted claims again", func() bool {
		clock.Step(time.Minute)
		recorded, _, _ := store.LoadClaims(ctx)
		return recorded["10.0.0.9"].Node == "owner"
	}, state)
	if err := nodes.Delete(nodeWith("squatter")); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := claims.Get("10.0.0.2"); c.Released.IsZero() {
		t.Errorf("Get(10.0.0.2) = %v after the Node was deleted, want released", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start() = %v", err)
	}
}

// nodeInOtherShard returns a Node name whose claims a Store keeps in another ConfigMap than
// those of nodes.
func nodeInOtherShard(t *testing.T, nodes ...string) string {
	t.Helper()
	shardOf := func(node string) string {
		c := configMaps{data: map[string]map[string]string{}}
		if _, err := history.NewStore(c, c, "csrguard").SaveClaims(t.Context(), map[string]policy.Claim{"10.0.0.1": {Node: node, Since: t0}}, t0); err != nil {
			t.Fatal(err)
		}
		for name := range c.data {
			return name
		}
		return ""
	}
	used := map[string]bool{}
	for _, n := range nodes {
		used[shardOf(n)] = true
	}
	for i := 0; ; i++ {
		if ghost := fmt.Sprintf("ghost-%d", i); !used[shardOf(ghost)] {
			return ghost
		}
	}
}

// waitFor polls cond until it holds, failing t after 10 s with state().
func waitFor(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting for %s%s", what, state())
	}
}

// TestKeeperWritesChangedShardsOnly: once the leader has written the claims, a change to one
// Node's addresses writes that Node's claim ConfigMap and no other.
func TestKeeperWritesChangedShardsOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	writes := map[string]int{} // ConfigMap -> writes tried
	count := func(obj client.Object) error {
		mu.Lock()
		defer mu.Unlock()
		writes[obj.GetName()]++
		return nil
	}
	records := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := count(obj); err != nil {
				return err
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if err := count(obj); err != nil {
				return err
			}
			return c.Update(ctx, obj, opts...)
		},
	}).Build()
	var objs []*corev1.Node
	for i := range 64 {
		objs = append(objs, nodeWith(fmt.Sprintf("node-%02d", i), fmt.Sprintf("10.0.1.%d", i)))
	}
	nodes := storeOf(objs...)
	clock := clocktesting.NewFakeClock(at(3600))
	claims := history.NewClaims(time.Minute)
	elected := make(chan struct{})
	close(elected)
	keeper := history.NewKeeper(claims, history.NewStore(records, records, "csrguard"), nodes, clock, elected, nil,
		prometheus.NewCounter(prometheus.CounterOpts{Name: "errors_total", Help: "Errors of the keeper under test."}))
	tried := func() (total int, by map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range writes {
			total += n
		}
		return total, maps.Clone(writes)
	}
	state := func() string { _, by := tried(); return fmt.Sprintf(": writes %v, now %v", by, clock.Now()) }
	done := make(chan error)
	go func() { done <- keeper.Start(ctx) }()
	waitSynced(t, claims)

	waitFor(t, "the leader to write every claim ConfigMap", func() bool {
		clock.Step(time.Second)
		n, _ := tried()
		return n == history.ClaimShards
	}, state)
	if err := nodes.Update(nodeWith("node-07", "10.0.1.7", "10.0.2.7")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed claims to be written", func() bool {
		clock.Step(time.Second)
		n, _ := tried()
		return n == history.ClaimShards+1
	}, state)
	for range 5 {
		clock.Step(time.Second)
	}
	if n, _ := tried(); n != history.ClaimShards+1 {
		t.Errorf("%d writes after one Node changed, want %d%s", n, history.ClaimShards+1, state())
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start() = %v", err)
	}
}
