// Package history is csrguard's memory of the cluster, which a snapshot of the API cannot give:
// which Node reported each address first (its claim), and every address and name the API
// server has been seen at. The policy needs both: the first so that a node that copies
// another's address into its own status is refused it while the owner keeps rotating, the
// second so that an API server address that drops out of the kubernetes EndpointSlice for a
// while is not handed to a node in that window.
//
// Claims and Identity are plain bookkeeping, driven by the caller with the time; Store keeps
// them in ConfigMaps in csrguard's namespace, so that a restart or a new leader remembers. The
// package decides nothing: policy reads a Claim and judges it.
package history

import (
	"cmp"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/csrguard/csrguard/internal/policy"
)

// Claims tracks which Node owns each address key (policy.AddressKey): the first Node seen
// reporting it alone. It is safe for concurrent use.
//
// A Node that starts reporting a key another Node owns is a squatter: the claim stays with the
// owner. A key two Nodes report with no claim (both were there before csrguard looked) is
// contested and stays unclaimed until one of them stops. A claim ends Settle after its owner
// stopped reporting the key or was deleted, so that a Node that is replaced, or re-registers,
// keeps its addresses against a squatter for that long, while reused addresses still move on.
//
// A Node holds at most MaxKeysPerNode claims, released ones included: a Node that keeps
// changing its addresses loses its oldest released claims first, so that it cannot grow the
// record without bound.
//
// A claim's times are wall-clock times, as recorded in its ConfigMap, without the monotonic
// reading of the time.Now they came from: a released claim ends when csrguard's clock says
// Settle has passed, so stepping that clock forward by more than Settle ends every released
// claim at once (docs/threat-model.md, clock skew).
//
// Cost: a fleet of Nodes of a few addresses each is kept in a few hundred bytes per Node
// (BenchmarkClaimsMemory), because almost every key is reported by one Node: a key holds its
// one reporter inline, and only a key that two Nodes or more report has a set of them. Each
// Node's name is stored once and shared by its claims and keys. SetNode and DeleteNode sort
// the keys they are given, then, under the lock, cost O(k) map operations for the k ≤
// MaxKeysPerNode old and new keys of the Node, plus O(MaxKeysPerNode) for each claim that a
// Node at MaxKeysPerNode sheds: never anything in the number of Nodes that report one key,
// which Nodes an attacker registers can make as large as they like. Adding or removing one
// reporter of a shared key is O(1), amortised: the set is dropped when it is down to one Node,
// whose name is then found by a walk over the set, paid for by the additions that made it
// large. Sync, Expire, NextExpiry, Nodes, Snapshot and Conflicts walk everything.
type Claims struct {
	// Settle is how long a released claim lasts: policy.Config.AddressSettleTime.
	Settle time.Duration

	mu        sync.Mutex
	keys      map[string]*keyState           // key -> its claim and reporters; absent when it has neither
	nodes     map[string]*nodeState          // node -> its keys and claims; absent when untracked and owning nothing
	shared    map[string]map[string]struct{} // key -> the Nodes reporting it, only for keys 2+ Nodes report
	overLimit map[string]int                 // node -> keys it reports, when over MaxKeysPerNode
	nclaims   int                            // keys with a claim
	synced    bool
	version   uint64   // bumped on every change to claims
	changed   shardSet // the claim ConfigMaps whose claims changed since takeChanged
}

// keyState is what Claims knows of one address key, in 48 bytes (a policy.Claim alone takes 64):
// a fleet has a few keys per Node.
type keyState struct {
	owner     *nodeState // the Node holding the claim; nil when the key is unclaimed
	since     instant    // the claim's Since
	released  instant    // the claim's Released: zero while its owner reports the key
	reporter  string     // the Node reporting it, when reporters is 1; Claims.shared has them when more
	reporters int        // how many Nodes report the key
}

func (e *keyState) claimed() bool { return e.owner != nil }

// claim returns the claim on the key, which is claimed.
func (e *keyState) claim() policy.Claim {
	return policy.Claim{Node: e.owner.name, Since: e.since.time(), Released: e.released.time()}
}

// instant is a time in 8 bytes rather than a time.Time's 24: Unix nanoseconds, 0 for the zero
// time. It keeps no monotonic reading and reads back in UTC, as a claim read from its ConfigMap
// does. A time outside the years 1678 to 2262, which Unix nanoseconds cannot hold, is kept as
// the nearest they can, and the Unix epoch itself a nanosecond later.
type instant int64

var minInstant, maxInstant = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// instantHolds reports whether t is within what an instant holds: Store leaves other recorded
// times out rather than have Claims clamp them, which would make distinct times equal.
func instantHolds(t time.Time) bool { return !t.Before(minInstant) && !t.After(maxInstant) }

func instantOf(t time.Time) instant {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minInstant):
		return math.MinInt64
	case t.After(maxInstant):
		return math.MaxInt64
	case t.UnixNano() == 0:
		return 1
	}
	return instant(t.UnixNano())
}

func (i instant) time() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(i)).UTC()
}

// nodeState is what Claims knows of one Node.
type nodeState struct {
	name    string   // the Node's name, held once: claims and reporters refer to this copy
	keys    []string // the keys it reports, sorted, at most MaxKeysPerNode; nil when untracked
	owned   []string // the keys it holds a claim on, sorted
	tracked bool     // its keys are known: Sync or SetNode saw it, and DeleteNode did not since
}

// MaxKeysPerNode bounds the addresses of one Node that Claims tracks, and the claims it holds.
// A kubelet's CSR carries a few; a Node reporting more is abnormal, and its sorted first
// MaxKeysPerNode are kept, so that no Node can make the record, or the work under its lock,
// grow without bound.
const MaxKeysPerNode = 64

// NewClaims returns empty Claims whose released claims last settle.
func NewClaims(settle time.Duration) *Claims {
	return &Claims{Settle: settle, keys: map[string]*keyState{}, nodes: map[string]*nodeState{}, shared: map[string]map[string]struct{}{}, overLimit: map[string]int{}}
}

// Get returns the claim on key. It reports synced false until Sync has run: before that,
// nobody can say who was first.
func (c *Claims) Get(key string) (claim policy.Claim, ok, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.keys[key]; e != nil && e.claimed() {
		return e.claim(), true, c.synced
	}
	return policy.Claim{}, false, c.synced
}

// Snapshot returns a copy of every claim and a version that changes whenever they do.
func (c *Claims) Snapshot() (map[string]policy.Claim, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]policy.Claim, c.nclaims)
	for key, e := range c.keys {
		if e.claimed() {
			out[key] = e.claim()
		}
	}
	return out, c.version
}

// Len returns the number of addresses claimed.
func (c *Claims) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nclaims
}

// takeChanged returns the claim ConfigMaps whose claims changed since it was last called.
func (c *Claims) takeChanged() shardSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.changed
	c.changed = 0
	return changed
}

// snapshotShards returns a copy of the claims kept in the claim ConfigMaps of shards: the
// Keeper copies, and the Store encodes, only what it may write, not every claim each time.
func (c *Claims) snapshotShards(shards shardSet) map[string]policy.Claim {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]policy.Claim{}
	for key, e := range c.keys {
		if e.claimed() && shards.has(shard(e.owner.name)) {
			out[key] = e.claim()
		}
	}
	return out
}

// touch records a change to a claim of node. c.mu is held.
func (c *Claims) touch(node string) {
	c.version++
	c.changed |= 1 << shard(node)
}

// Sync starts the bookkeeping from recorded claims (a Store's, possibly empty) and every Node's
// current keys, at now. Recorded claims that ran out while nobody watched are dropped first.
// Recorded claims of Nodes that are gone, or that no longer report the key, are released now
// (they end Settle later), and those whose Node reports the key again are not released any
// more; keys that exactly one Node reports and nobody claims are claimed by it. Keys several
// Nodes report without a claim stay contested: there is no telling who was first.
func (c *Claims) Sync(recorded map[string]policy.Claim, nodes map[string][]string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Sized up front: a fleet's maps grown one doubling at a time leave their old tables to the GC.
	c.keys, c.nodes, c.shared, c.nclaims = make(map[string]*keyState, max(len(recorded), len(nodes))), make(map[string]*nodeState, len(nodes)), map[string]map[string]struct{}{}, 0
	for key, cl := range recorded {
		if !c.ended(cl, now) {
			// A record may hold any number of claims of one Node: sort its list once below
			// rather than insert into it in order.
			st := c.claim(key, cl)
			st.owned = append(st.owned, key)
		}
	}
	for _, st := range c.nodes {
		slices.Sort(st.owned)
	}
	c.overLimit = map[string]int{}
	for node, keys := range nodes {
		keys, n := bounded(keys)
		if n > MaxKeysPerNode {
			c.overLimit[node] = n
		}
		c.setKeys(node, keys)
	}
	for key, e := range c.keys {
		if !e.claimed() {
			continue
		}
		switch reports := c.reports(key, e, e.owner.name); {
		case reports && e.released != 0:
			e.released = 0
		case !reports && e.released == 0:
			e.released = instantOf(now)
		}
	}
	for key, e := range c.keys {
		if e.reporters > 0 {
			c.settle(key, now)
		}
	}
	for node, st := range c.nodes {
		if len(st.owned) > 0 {
			c.bound(node, now)
		}
	}
	c.synced = true
	c.version++
	c.changed = allShards
}

// SetNode records the keys a Node reports now, as a Node watch event gives them.
func (c *Claims) SetNode(node string, keys []string, now time.Time) {
	keys, n := bounded(keys)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > MaxKeysPerNode {
		c.overLimit[node] = n
	} else {
		delete(c.overLimit, node)
	}
	var old []string
	if st := c.nodes[node]; st != nil {
		old = st.keys
	}
	if slices.Equal(old, keys) {
		return
	}
	c.setKeys(node, keys)
	for _, key := range keys {
		if e := c.keys[key]; e.claimed() && e.owner.name == node && e.released != 0 {
			e.released = 0 // reporting it again
			c.touch(node)
		}
	}
	for _, key := range old {
		if _, current := slices.BinarySearch(keys, key); current {
			continue
		}
		if e := c.keys[key]; e != nil && e.claimed() && e.owner.name == node && e.released == 0 {
			e.released = instantOf(now)
			c.touch(node)
		}
	}
	for _, key := range old {
		c.settle(key, now)
	}
	for _, key := range keys {
		c.settle(key, now)
	}
}

// Nodes returns the Nodes whose addresses are tracked, sorted.
func (c *Claims) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for node, st := range c.nodes {
		if st.tracked {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

// DeleteNode records that a Node is gone: its claims are released now.
func (c *Claims) DeleteNode(node string, now time.Time) {
	c.SetNode(node, nil, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.nodes[node]; st != nil {
		// SetNode left it reporting nothing.
		st.tracked, st.keys = false, nil
		c.forget(st)
	}
}

// Expire ends the claims released at least Settle before now, and lets a key that one Node
// alone reports pass to it. It returns the Nodes that gained a claim so. Ended claims are
// visited in key order, so that the answer does not depend on map order when ending one makes
// a Node at MaxKeysPerNode shed another (that Node's gain is not reported then).
func (c *Claims) Expire(now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ended []string
	for key, e := range c.keys {
		if e.claimed() && c.ended(e.claim(), now) {
			ended = append(ended, key)
		}
	}
	slices.Sort(ended)
	var gained []string
	for _, key := range ended {
		if e := c.keys[key]; e != nil && e.claimed() && c.ended(e.claim(), now) {
			c.drop(key)
			if node := c.settle(key, now); node != "" {
				gained = append(gained, node)
			}
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(gained)))
}

// NextExpiry returns when the earliest released claim ends, or false when none is released.
func (c *Claims) NextExpiry() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, e := range c.keys {
		if e.claimed() && e.released != 0 {
			if end := e.released.time().Add(c.Settle); next.IsZero() || end.Before(next) {
				next = end
			}
		}
	}
	return next, !next.IsZero()
}

// Conflict is a Node reporting an address that another Node owns or also reports, or more
// addresses than MaxKeysPerNode (then Key says how many, and Owner is empty).
type Conflict struct {
	// Node reports Key; Owner owns it, or is empty when Key is contested (nobody owns it).
	Node, Key, Owner string
}

// Conflicts lists every Node reporting an address it does not own that another Node owns or
// reports too, sorted by node and key.
func (c *Claims) Conflicts() []Conflict {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Conflict
	for key, e := range c.keys {
		if e.reporters == 0 {
			continue
		}
		for node := range c.reportersOf(key, e) {
			switch {
			case e.claimed() && e.owner.name != node:
				out = append(out, Conflict{Node: node, Key: key, Owner: e.owner.name})
			case !e.claimed() && e.reporters > 1:
				out = append(out, Conflict{Node: node, Key: key})
			}
		}
	}
	for node, n := range c.overLimit {
		out = append(out, Conflict{Node: node, Key: fmt.Sprintf("(%d addresses, over %d)", n, MaxKeysPerNode)})
	}
	slices.SortFunc(out, func(a, b Conflict) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// bounded returns keys sorted, without duplicates, and cut to MaxKeysPerNode, and how many
// distinct keys there were.
func bounded(keys []string) ([]string, int) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	n := len(keys)
	if n > MaxKeysPerNode {
		keys = keys[:MaxKeysPerNode]
	}
	return keys, n
}

// reportersOf returns the Nodes reporting key, whose state is e. c.mu is held.
func (c *Claims) reportersOf(key string, e *keyState) iter.Seq[string] {
	if e.reporters == 1 {
		return func(yield func(string) bool) { yield(e.reporter) }
	}
	return maps.Keys(c.shared[key])
}

// reports reports whether node reports key, whose state is e. c.mu is held.
func (c *Claims) reports(key string, e *keyState, node string) bool {
	switch e.reporters {
	case 0:
		return false
	case 1:
		return e.reporter == node
	}
	_, ok := c.shared[key][node]
	return ok
}

// node returns the state of a Node, made when it has none. c.mu is held.
func (c *Claims) node(name string) *nodeState {
	st := c.nodes[name]
	if st == nil {
		st = &nodeState{name: name}
		c.nodes[name] = st
	}
	return st
}

// forget removes the state of a Node that is neither tracked nor owns anything. c.mu is held.
func (c *Claims) forget(st *nodeState) {
	if !st.tracked && len(st.owned) == 0 {
		delete(c.nodes, st.name)
	}
}

// entry returns the state of key, made when it has none. c.mu is held.
func (c *Claims) entry(key string) *keyState {
	e := c.keys[key]
	if e == nil {
		e = &keyState{}
		c.keys[key] = e
	}
	return e
}

// release removes the state of key when it has neither a claim nor a reporter. c.mu is held.
func (c *Claims) release(key string, e *keyState) {
	if !e.claimed() && e.reporters == 0 {
		delete(c.keys, key)
	}
}

// setKeys replaces a Node's reported keys, sorted, in the reporter index, and tracks it: O(k)
// map operations for its k old and new keys. c.mu is held.
func (c *Claims) setKeys(node string, keys []string) {
	st := c.node(node)
	old := st.keys
	i, j := 0, 0
	for i < len(old) || j < len(keys) {
		switch {
		case j == len(keys) || i < len(old) && old[i] < keys[j]:
			c.unreport(old[i], st.name)
			i++
		case i == len(old) || keys[j] < old[i]:
			c.report(keys[j], st.name)
			j++
		default: // reported before and now
			i++
			j++
		}
	}
	if cap(keys) > len(keys) {
		keys = slices.Clone(keys) // bounded's slice may have room to spare: keep only the keys
	}
	st.keys, st.tracked = keys, true
}

// report records that node reports key: O(1). c.mu is held.
func (c *Claims) report(key, node string) {
	e := c.entry(key)
	switch e.reporters {
	case 0:
		e.reporter = node
	case 1:
		c.shared[key] = map[string]struct{}{e.reporter: {}, node: {}}
		e.reporter = ""
	default:
		c.shared[key][node] = struct{}{}
	}
	e.reporters++
}

// unreport records that node, which reported key, does not any more: O(1), amortised (see
// Claims). c.mu is held.
func (c *Claims) unreport(key, node string) {
	e := c.keys[key]
	switch e.reporters {
	case 1:
		e.reporter = ""
	case 2:
		delete(c.shared[key], node)
		for last := range c.shared[key] {
			e.reporter = last
		}
		delete(c.shared, key)
	default:
		delete(c.shared[key], node)
	}
	e.reporters--
	c.release(key, e)
}

// settle claims key for the Node that alone reports it, if nobody claims it, and returns that
// Node. c.mu is held.
func (c *Claims) settle(key string, now time.Time) string {
	e := c.keys[key]
	if e == nil || e.claimed() || e.reporters != 1 {
		return ""
	}
	node := e.reporter
	c.put(key, policy.Claim{Node: node, Since: now})
	c.bound(node, now)
	return node
}

// bound ends a Node's oldest released claims while it holds more than MaxKeysPerNode. Its
// unreleased claims are on keys it reports, which are bounded already. Each claim ended costs
// O(MaxKeysPerNode) to find. c.mu is held.
func (c *Claims) bound(node string, now time.Time) {
	for st := c.nodes[node]; st != nil && len(st.owned) > MaxKeysPerNode; st = c.nodes[node] {
		var oldest string
		var at time.Time
		for _, key := range st.owned { // sorted: the first of equal times is the smallest key
			if cl := c.keys[key].claim(); !cl.Released.IsZero() && (at.IsZero() || cl.Released.Before(at)) {
				oldest, at = key, cl.Released
			}
		}
		if at.IsZero() {
			return
		}
		c.drop(oldest)
		c.settle(oldest, now)
	}
}

// ended reports whether a released claim has run out at now.
func (c *Claims) ended(cl policy.Claim, now time.Time) bool {
	return !cl.Released.IsZero() && !now.Before(cl.Released.Add(c.Settle))
}

// claim sets the claim on key, which nobody holds, and returns its owner's state; the caller
// adds key to the owner's list. c.mu is held.
func (c *Claims) claim(key string, cl policy.Claim) *nodeState {
	st := c.node(cl.Node)
	e := c.entry(key)
	e.owner, e.since, e.released = st, instantOf(cl.Since), instantOf(cl.Released)
	c.nclaims++
	c.touch(st.name)
	return st
}

// put sets the claim on key, which nobody holds: O(MaxKeysPerNode). c.mu is held.
func (c *Claims) put(key string, cl policy.Claim) {
	st := c.claim(key, cl)
	i, _ := slices.BinarySearch(st.owned, key)
	st.owned = slices.Insert(st.owned, i, key)
}

// drop ends the claim on key: O(MaxKeysPerNode). c.mu is held.
func (c *Claims) drop(key string) {
	e := c.keys[key]
	st := e.owner
	if i, ok := slices.BinarySearch(st.owned, key); ok {
		st.owned = slices.Delete(st.owned, i, i+1)
	}
	if len(st.owned) == 0 {
		st.owned = nil
	}
	c.touch(st.name)
	e.owner, e.since, e.released = nil, 0, 0
	c.nclaims--
	c.forget(st)
	c.release(key, e)
}
