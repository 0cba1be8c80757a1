package history

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
)

// Keeper drives Claims from the controller's Node store (nodes.Store) and keeps them in a Store. Every
// replica keeps its own Claims warm (a standby takes over knowing what the leader knew); only
// the leader writes them. It is a manager.Runnable.
type Keeper struct {
	claims  *Claims
	store   *Store
	nodes   NodeSource
	clock   clock.WithTicker
	elected <-chan struct{}
	// gained is called with the Nodes that gained a claim because another's ran out, so that
	// their held CSRs are decided at once.
	gained func(nodes []string)
	errs   prometheus.Counter
}

// NodeSource is where the Keeper follows the Nodes: a nodes.Store.
type NodeSource interface {
	Subscribe(ctx context.Context, init func(all []*nodes.Node), changed func(old, cur *nodes.Node)) (func(), error)
}

// NewKeeper returns a Keeper of claims over the Nodes of c. elected closes when this replica
// leads (nil: never write); gained may be nil; errs counts failed reads and writes.
func NewKeeper(claims *Claims, store *Store, c NodeSource, clk clock.WithTicker, elected <-chan struct{}, gained func([]string), errs prometheus.Counter) *Keeper {
	return &Keeper{claims: claims, store: store, nodes: c, clock: clk, elected: elected, gained: gained, errs: errs}
}

// RewriteClaimsEvery is how often the leader writes every claim ConfigMap, changed or not, so
// that one edited or deleted by someone else is restored within that time.
const RewriteClaimsEvery = 10 * time.Minute

// NeedLeaderElection is false: every replica keeps claims; writing waits for elected.
func (k *Keeper) NeedLeaderElection() bool { return false }

// Start loads the recorded claims, syncs them with the Nodes of its source, follows their changes,
// ends released claims on time and, once leading, saves every change. Until the first load and
// sync succeed, Claims.Get reports unsynced and the policy holds every CSR.
func (k *Keeper) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("address-claims")
	recorded, err := k.load(ctx)
	if err != nil {
		return nil // ctx ended
	}
	// Sync with the Nodes as they are, then follow every change: the store sends each state once.
	stop, err := k.nodes.Subscribe(ctx, func(all []*nodes.Node) {
		current := make(map[string][]string, len(all))
		for _, n := range all {
			current[n.Name] = n.Keys()
		}
		k.claims.Sync(recorded, current, k.clock.Now())
	}, func(old, cur *nodes.Node) {
		switch {
		case cur == nil:
			k.claims.DeleteNode(old.Name, k.clock.Now())
		case old == nil || !slices.Equal(old.Addresses, cur.Addresses):
			k.claims.SetNode(cur.Name, cur.Keys(), k.clock.Now())
		}
	})
	if err != nil {
		return nil // ctx ended before the Nodes were listed
	}
	defer stop()
	logger.Info("Loaded address claims", "recorded", len(recorded), "claims", k.claims.Len(), "namespace", k.store.Namespace())

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
