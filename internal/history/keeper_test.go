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
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllertest"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

// nodeSource is a Node cache: List from a fake client, events from a fake
// informer whose handler registration the test can wait for. afterList, if
// set, runs after the n-th List (from 1), before it returns.
type nodeSource struct {
	client.Client
	informer  *informer
	lists     int
	afterList func(n int)
}

func (s *nodeSource) List(ctx context.Context, l client.ObjectList, opts ...client.ListOption) error {
	err := s.Client.List(ctx, l, opts...)
	s.lists++
	if s.afterList != nil {
		s.afterList(s.lists)
	}
	return err
}

func (s *nodeSource) WaitForCacheSync(context.Context) bool { return true }

func (s *nodeSource) GetInformer(context.Context, client.Object, ...cache.InformerGetOption) (cache.Informer, error) {
	return s.informer, nil
}

// informer is a fake informer that says when a handler is registered, and runs
// beforeRegister first (a Node deleted then sends the handler no event).
type informer struct {
	*controllertest.FakeInformer
	registered     chan struct{}
	beforeRegister func()
}

func (i *informer) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	if i.beforeRegister != nil {
		i.beforeRegister()
	}
	r, err := i.FakeInformer.AddEventHandler(h)
	close(i.registered)
	return r, err
}

func nodeWith(name string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

// TestKeeper runs the Keeper over a recorded claim and a squatter that came
// while csrguard was down: the record wins; a Node deleted before the watch
// began is released all the same, one created meanwhile is not; events move claims; nothing is written
// before this replica leads; once it leads the record follows; a claim that
// runs out passes to the new holder, who is requeued.
func TestKeeper(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	records := fake.NewClientBuilder().Build()
	store := history.NewStore(records, records, "csrguard")
	if _, err := store.SaveClaims(ctx, map[string]policy.Claim{"10.0.0.1": {Node: "owner", Since: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	nodes := &nodeSource{
		Client:   fake.NewClientBuilder().WithObjects(nodeWith("owner", "10.0.0.1"), nodeWith("squatter", "10.0.0.2", "10.0.0.1"), nodeWith("departed", "10.0.0.3")).Build(),
		informer: &informer{FakeInformer: controllertest.NewFakeInformer(controllertest.Synced), registered: make(chan struct{})},
	}
	nodes.informer.beforeRegister = func() {
		if err := nodes.Delete(ctx, nodeWith("departed")); err != nil {
			t.Error(err)
		}
	}
	// A Node created just after the keeper's second List (its sweep for deleted
	// Nodes) must not be taken for deleted.
	nodes.afterList = func(n int) {
		if n == 2 {
			late := nodeWith("a-late", "10.0.0.50")
			if err := nodes.Create(ctx, late.DeepCopy()); err != nil {
				t.Error(err)
			}
			nodes.informer.Add(late)
		}
	}
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

	<-nodes.informer.registered
	if c, ok, synced := claims.Get("10.0.0.1"); !synced || !ok || c.Node != "owner" || !c.Since.Equal(t0) {
		t.Fatalf("Get(10.0.0.1) = %v, %v, %v; want the recorded owner", c, ok, synced)
	}
	if c, _, _ := claims.Get("10.0.0.2"); c.Node != "squatter" {
		t.Errorf("Get(10.0.0.2) = %v, want the squatter's own address claimed by it", c)
	}
	waitFor(t, "the claim of the Node deleted before the watch to be released", func() bool {
		c, _, _ := claims.Get("10.0.0.3")
		return c.Node == "departed" && !c.Released.IsZero()
	}, state)
	// The sweep goes in name order: "a-late" came before "departed".
	if c, ok, _ := claims.Get("10.0.0.50"); !ok || c.Node != "a-late" || !c.Released.IsZero() {
		t.Errorf("Get(10.0.0.50) = %v, %v; want a live claim of the Node created during the sweep", c, ok)
	}

	// The owner moves away; the squatter then alone reports the address.
	nodes.informer.Update(nodeWith("owner", "10.0.0.1"), nodeWith("owner", "10.0.0.9"))
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
	nodes.informer.Delete(nodeWith("squatter", "10.0.0.2", "10.0.0.1"))
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
	var objs []client.Object
	for i := range 64 {
		objs = append(objs, nodeWith(fmt.Sprintf("node-%02d", i), fmt.Sprintf("10.0.1.%d", i)))
	}
	nodes := &nodeSource{
		Client:   fake.NewClientBuilder().WithObjects(objs...).Build(),
		informer: &informer{FakeInformer: controllertest.NewFakeInformer(controllertest.Synced), registered: make(chan struct{})},
	}
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
	<-nodes.informer.registered

	waitFor(t, "the leader to write every claim ConfigMap", func() bool {
		clock.Step(time.Second)
		n, _ := tried()
		return n == history.ClaimShards
	}, state)
	nodes.informer.Update(nodeWith("node-07", "10.0.1.7"), nodeWith("node-07", "10.0.1.7", "10.0.2.7"))
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
