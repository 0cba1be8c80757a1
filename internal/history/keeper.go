package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
)

// Keeper drives Claims from the controller's Node cache and keeps them in a Store. Every
// replica keeps its own Claims warm (a standby takes over knowing what the leader knew); only
// the leader writes them. It is a manager.Runnable.
type Keeper struct {
	claims  *Claims
	store   *Store
	cache   NodeSource
	clock   clock.WithTicker
	elected <-chan struct{}
	// gained is called with the Nodes that gained a claim because another's ran out, so that
	// their held CSRs are decided at once.
	gained func(nodes []string)
	errs   prometheus.Counter
}

// NodeSource is the part of the controller's cache the Keeper reads Nodes from.
type NodeSource interface {
	WaitForCacheSync(ctx context.Context) bool
	List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// NewKeeper returns a Keeper of claims over the Nodes of c. elected closes when this replica
// leads (nil: never write); gained may be nil; errs counts failed reads and writes.
func NewKeeper(claims *Claims, store *Store, c NodeSource, clk clock.WithTicker, elected <-chan struct{}, gained func([]string), errs prometheus.Counter) *Keeper {
	return &Keeper{claims: claims, store: store, cache: c, clock: clk, elected: elected, gained: gained, errs: errs}
}

// RewriteClaimsEvery is how often the leader writes every claim ConfigMap, changed or not, so
// that one edited or deleted by someone else is restored within that time.
const RewriteClaimsEvery = 10 * time.Minute

// NeedLeaderElection is false: every replica keeps claims; writing waits for elected.
func (k *Keeper) NeedLeaderElection() bool { return false }

// Start loads the recorded claims, syncs them with the Nodes in the cache, follows Node events,
// ends released claims on time and, once leading, saves every change. Until the first load and
// sync succeed, Claims.Get reports unsynced and the policy holds every CSR.
func (k *Keeper) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("address-claims")
	recorded, err := k.load(ctx)
	if err != nil {
		return nil // ctx ended
	}
	if !k.cache.WaitForCacheSync(ctx) {
		return nil
	}
	// Read only: no deep copy of each Node (at 10,000 Nodes the copies were 9 MB of a 50 MB startup peak).
	var nodes corev1.NodeList
	if err := k.cache.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list nodes for address claims: %w", err)
	}
	current := make(map[string][]string, len(nodes.Items))
	for _, n := range nodes.Items {
		current[n.Name] = policy.AddressKeys(n.Status.Addresses)
	}
	k.claims.Sync(recorded, current, k.clock.Now())
	logger.Info("Loaded address claims", "recorded", len(recorded), "claims", k.claims.Len(), "nodes", len(current), "namespace", k.store.Namespace())

	informer, err := k.cache.GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return fmt.Errorf("node informer for address claims: %w", err)
	}
	// The registration replays every cached Node as an addition: idempotent after Sync.
	reg, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { k.setNode(o) },
		UpdateFunc: func(_, o any) { k.setNode(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if n, ok := o.(*corev1.Node); ok {
				k.claims.DeleteNode(n.Name, k.clock.Now())
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch nodes for address claims: %w", err)
	}
	defer func() { _ = informer.RemoveEventHandler(reg) }()
	// A Node deleted between the List and the registration sends no event: once the handler
	// has seen the cache, release whatever a Node that is no longer there still holds.
	// Take the tracked Nodes before listing: one created in between is then in the list, not
	// mistaken for deleted.
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	tracked := k.claims.Nodes()
	if err := k.cache.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list nodes for address claims: %w", err)
	}
	present := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		present[n.Name] = true
	}
	for _, node := range tracked {
		if !present[node] {
			k.claims.DeleteNode(node, k.clock.Now())
		}
	}

	flush := k.clock.NewTicker(time.Second)
	defer flush.Stop()
	elected := k.elected
	leading := false
	w := &writer{claims: k.claims, store: k.store}
	for {
		wait := time.Minute
		if next, ok := k.claims.NextExpiry(); ok {
			wait = max(next.Sub(k.clock.Now()), 10*time.Millisecond)
		}
		expiry := k.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			expiry.Stop()
			return nil
		case <-elected:
			leading, elected = true, nil
		case <-expiry.C():
		case <-flush.C():
		}
		expiry.Stop()
		// Whichever woke us, end the claims that are due.
		if next, ok := k.claims.NextExpiry(); ok && !k.clock.Now().Before(next) {
			if nodes := k.claims.Expire(k.clock.Now()); len(nodes) > 0 && k.gained != nil {
				k.gained(nodes)
			}
		}
		if !leading {
			continue // only the leader writes
		}
		if err := w.save(ctx, k.clock.Now()); err != nil {
			k.errs.Inc()
			logger.Error(err, "Failed to save address claims; keeping them in memory and retrying with backoff")
		}
	}
}

// writer is the leader's side of a Keeper: what it has still to write.
type writer struct {
	claims    *Claims
	store     *Store
	unsaved   shardSet  // claim ConfigMaps changed and not written yet
	rewritten time.Time // when every claim ConfigMap was last rewritten; zero: not yet
}

// save writes, at now, the claim ConfigMaps whose claims changed and whose backoff has passed.
// The Store backs off each ConfigMap it failed to write, so the Keeper calls this every second
// without flooding the API server or the log, and one ConfigMap that cannot be written does
// not hold up the others. Claims are copied and encoded only for the ConfigMaps about to be
// written: a copy of all of them is as large as the claims, and a change to one Node, or a
// namespace that cannot be written to, would otherwise cost an encoding of every Node's claims
// each second. Except that on the first call (the previous leader may have written the
// ConfigMaps since this replica loaded them), and every RewriteClaimsEvery after (someone may
// have edited or deleted one), every ConfigMap is written whatever this replica last saw in
// it: claims held only in memory are lost at the next restart.
func (w *writer) save(ctx context.Context, now time.Time) error {
	w.unsaved |= w.claims.takeChanged()
	if !now.Before(w.rewritten.Add(RewriteClaimsEvery)) {
		w.store.ForgetSaved()
		w.rewritten = now
		w.unsaved = allShards
	}
	due := w.store.due(w.unsaved, now)
	if due == 0 {
		return nil
	}
	left, err := w.store.saveShards(ctx, w.claims.snapshotShards(due), due, now)
	w.unsaved = w.unsaved&^due | left
	return err
}

// load reads the recorded claims, retrying until it succeeds or ctx ends: without them a
// squatter that appeared while csrguard was down would look like the owner.
func (k *Keeper) load(ctx context.Context) (map[string]policy.Claim, error) {
	logger := log.FromContext(ctx).WithName("address-claims")
	delay := time.Second
	for {
		recorded, problems, err := k.store.LoadClaims(ctx)
		if err == nil {
			for _, p := range problems {
				// Left out, so no entry can give an address away; the next save drops it.
				logger.Info("Ignored an unusable recorded address claim", "problem", p)
			}
			return recorded, nil
		}
		k.errs.Inc()
		logger.Error(err, "Failed to load address claims; every CSR is held until they load", "retryIn", delay)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-k.clock.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

func (k *Keeper) setNode(o any) {
	if n, ok := o.(*corev1.Node); ok {
		k.claims.SetNode(n.Name, policy.AddressKeys(n.Status.Addresses), k.clock.Now())
	}
}

// ErrNotSynced is returned for a claim lookup before the claims are loaded.
var ErrNotSynced = errors.New("address claims not loaded yet")

// ConflictCollector exports csrguard_node_address_conflicts from claims at scrape time.
type ConflictCollector struct{ claims *Claims }

// NewConflictCollector returns a collector over claims.
func NewConflictCollector(claims *Claims) *ConflictCollector {
	return &ConflictCollector{claims: claims}
}

// Describe implements prometheus.Collector.
func (c *ConflictCollector) Describe(ch chan<- *prometheus.Desc) { ch <- metrics.NodeAddressConflicts }

// Collect implements prometheus.Collector: one series per Node in conflict.
func (c *ConflictCollector) Collect(ch chan<- prometheus.Metric) {
	count := map[string]int{}
	for _, cf := range c.claims.Conflicts() {
		count[cf.Node]++
	}
	for node, n := range count {
		ch <- prometheus.MustNewConstMetric(metrics.NodeAddressConflicts, prometheus.GaugeValue, float64(n), node)
	}
}
