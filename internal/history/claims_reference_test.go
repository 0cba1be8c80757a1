// This file is the address-claims bookkeeping as it was before its representation was made
// compact (#13): claims.go at 88e804e, renamed, kept only as the reference that
// TestClaimsEquivalence compares the package against. It must not change except as noted:
// Expire visits the ended claims in key order instead of map order, because the old code's
// answer (which Nodes it reports as having gained a claim) depended on the order when ending
// one claim made a Node at MaxKeysPerNode drop another ended one; the package does the same.

package history_test

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

// refClaims tracks which Node owns each address key (policy.AddressKey): the first Node seen
// reporting it alone. It is safe for concurrent use.
//
// A Node that starts reporting a key another Node owns is a squatter: the claim stays with the
// owner. A key two Nodes report with no claim (both were there before csrguard looked) is
// contested and stays unclaimed until one of them stops. A claim ends Settle after its owner
// stopped reporting the key or was deleted, so that a Node that is replaced, or re-registers,
// keeps its addresses against a squatter for that long, while reused addresses still move on.
//
// A Node holds at most history.MaxKeysPerNode claims, released ones included: a Node that keeps
// changing its addresses loses its oldest released claims first, so that it cannot grow the
// record without bound.
type refClaims struct {
	// Settle is how long a released claim lasts: policy.Config.AddressSettleTime.
	Settle time.Duration

	mu        sync.Mutex
	claims    map[string]policy.Claim
	owned     map[string]map[string]bool // node -> keys it holds a claim on
	reporters map[string]map[string]bool // key -> nodes reporting it
	nodeKeys  map[string][]string        // node -> keys it reports, sorted
	overLimit map[string]int             // node -> keys it reports, when over history.MaxKeysPerNode
	synced    bool
	version   uint64 // bumped on every change to claims
}

// newRefClaims returns empty refClaims whose released claims last settle.
func newRefClaims(settle time.Duration) *refClaims {
	return &refClaims{Settle: settle, claims: map[string]policy.Claim{}, owned: map[string]map[string]bool{}, reporters: map[string]map[string]bool{}, nodeKeys: map[string][]string{}, overLimit: map[string]int{}}
}

// Get returns the claim on key. It reports synced false until Sync has run: before that,
// nobody can say who was first.
func (c *refClaims) Get(key string) (claim policy.Claim, ok, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	claim, ok = c.claims[key]
	return claim, ok, c.synced
}

// Snapshot returns a copy of every claim and a version that changes whenever they do.
func (c *refClaims) Snapshot() (map[string]policy.Claim, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.claims), c.version
}

// Sync starts the bookkeeping from recorded claims (a Store's, possibly empty) and every Node's
// current keys, at now. Recorded claims that ran out while nobody watched are dropped first.
// Recorded claims of Nodes that are gone, or that no longer report the key, are released now
// (they end Settle later), and those whose Node reports the key again are not released any
// more; keys that exactly one Node reports and nobody claims are claimed by it. Keys several
// Nodes report without a claim stay contested: there is no telling who was first.
func (c *refClaims) Sync(recorded map[string]policy.Claim, nodes map[string][]string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.claims, c.owned = map[string]policy.Claim{}, map[string]map[string]bool{}
	for key, cl := range recorded {
		if !c.ended(cl, now) {
			c.put(key, cl)
		}
	}
	c.reporters, c.nodeKeys, c.overLimit = map[string]map[string]bool{}, map[string][]string{}, map[string]int{}
	for node, keys := range nodes {
		keys, n := refBounded(keys)
		if n > history.MaxKeysPerNode {
			c.overLimit[node] = n
		}
		c.setKeys(node, keys)
	}
	for key, cl := range c.claims {
		switch reports := c.reporters[key][cl.Node]; {
		case reports && !cl.Released.IsZero():
			cl.Released = time.Time{}
		case !reports && cl.Released.IsZero():
			cl.Released = now
		}
		c.claims[key] = cl
	}
	for key := range c.reporters {
		c.settle(key, now)
	}
	for node := range c.owned {
		c.bound(node, now)
	}
	c.synced = true
	c.version++
}

// SetNode records the keys a Node reports now, as a Node watch event gives them.
func (c *refClaims) SetNode(node string, keys []string, now time.Time) {
	keys, n := refBounded(keys)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > history.MaxKeysPerNode {
		c.overLimit[node] = n
	} else {
		delete(c.overLimit, node)
	}
	old := c.nodeKeys[node]
	if slices.Equal(old, keys) {
		return
	}
	c.setKeys(node, keys)
	current := make(map[string]bool, len(keys))
	for _, key := range keys {
		current[key] = true
		if cl, ok := c.claims[key]; ok && cl.Node == node && !cl.Released.IsZero() {
			cl.Released = time.Time{} // reporting it again
			c.claims[key] = cl
			c.version++
		}
	}
	for _, key := range old {
		if current[key] {
			continue
		}
		if cl, ok := c.claims[key]; ok && cl.Node == node && cl.Released.IsZero() {
			cl.Released = now
			c.claims[key] = cl
			c.version++
		}
	}
	for _, key := range append(old, keys...) {
		c.settle(key, now)
	}
}

// Nodes returns the Nodes whose addresses are tracked, sorted.
func (c *refClaims) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.nodeKeys))
}

// DeleteNode records that a Node is gone: its claims are released now.
func (c *refClaims) DeleteNode(node string, now time.Time) {
	c.SetNode(node, nil, now)
	c.mu.Lock()
	delete(c.nodeKeys, node)
	c.mu.Unlock()
}

// Expire ends the claims released at least Settle before now, and lets a key that one Node
// alone reports pass to it. It returns the Nodes that gained a claim so.
func (c *refClaims) Expire(now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gained []string
	for _, key := range slices.Sorted(maps.Keys(c.claims)) { // was: range c.claims (see the file comment)
		if cl, ok := c.claims[key]; ok && c.ended(cl, now) {
			c.drop(key)
			if node := c.settle(key, now); node != "" {
				gained = append(gained, node)
			}
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(gained)))
}

// NextExpiry returns when the earliest released claim ends, or false when none is released.
func (c *refClaims) NextExpiry() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, cl := range c.claims {
		if end := cl.Released.Add(c.Settle); !cl.Released.IsZero() && (next.IsZero() || end.Before(next)) {
			next = end
		}
	}
	return next, !next.IsZero()
}

// Conflicts lists every Node reporting an address it does not own that another Node owns or
// reports too, sorted by node and key.
func (c *refClaims) Conflicts() []history.Conflict {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []history.Conflict
	for key, nodes := range c.reporters {
		cl, claimed := c.claims[key]
		for node := range nodes {
			switch {
			case claimed && cl.Node != node:
				out = append(out, history.Conflict{Node: node, Key: key, Owner: cl.Node})
			case !claimed && len(nodes) > 1:
				out = append(out, history.Conflict{Node: node, Key: key})
			}
		}
	}
	for node, n := range c.overLimit {
		out = append(out, history.Conflict{Node: node, Key: fmt.Sprintf("(%d addresses, over %d)", n, history.MaxKeysPerNode)})
	}
	slices.SortFunc(out, func(a, b history.Conflict) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// refBounded returns keys sorted, without duplicates, and cut to history.MaxKeysPerNode, and how many
// distinct keys there were.
func refBounded(keys []string) ([]string, int) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	n := len(keys)
	if n > history.MaxKeysPerNode {
		keys = keys[:history.MaxKeysPerNode]
	}
	return keys, n
}

// setKeys replaces a Node's reported keys in the reporter index. c.mu is held.
func (c *refClaims) setKeys(node string, keys []string) {
	for _, key := range c.nodeKeys[node] {
		delete(c.reporters[key], node)
		if len(c.reporters[key]) == 0 {
			delete(c.reporters, key)
		}
	}
	c.nodeKeys[node] = keys
	for _, key := range keys {
		if c.reporters[key] == nil {
			c.reporters[key] = map[string]bool{}
		}
		c.reporters[key][node] = true
	}
}

// settle claims key for the Node that alone reports it, if nobody claims it, and returns that
// Node. c.mu is held.
func (c *refClaims) settle(key string, now time.Time) string {
	if _, ok := c.claims[key]; ok || len(c.reporters[key]) != 1 {
		return ""
	}
	for node := range c.reporters[key] {
		c.put(key, policy.Claim{Node: node, Since: now})
		c.bound(node, now)
		return node
	}
	return ""
}

// bound ends a Node's oldest released claims while it holds more than history.MaxKeysPerNode. Its
// unreleased claims are on keys it reports, which are refBounded already. c.mu is held.
func (c *refClaims) bound(node string, now time.Time) {
	for len(c.owned[node]) > history.MaxKeysPerNode {
		oldest := ""
		for key := range c.owned[node] {
			cl := c.claims[key]
			if cl.Released.IsZero() {
				continue
			}
			if o := c.claims[oldest]; oldest == "" || cl.Released.Before(o.Released) || cl.Released.Equal(o.Released) && key < oldest {
				oldest = key
			}
		}
		if oldest == "" {
			return
		}
		c.drop(oldest)
		c.settle(oldest, now)
	}
}

// ended reports whether a released claim has run out at now.
func (c *refClaims) ended(cl policy.Claim, now time.Time) bool {
	return !cl.Released.IsZero() && !now.Before(cl.Released.Add(c.Settle))
}

// put sets the claim on key, which nobody holds. c.mu is held.
func (c *refClaims) put(key string, cl policy.Claim) {
	c.claims[key] = cl
	if c.owned[cl.Node] == nil {
		c.owned[cl.Node] = map[string]bool{}
	}
	c.owned[cl.Node][key] = true
	c.version++
}

// drop ends the claim on key. c.mu is held.
func (c *refClaims) drop(key string) {
	node := c.claims[key].Node
	delete(c.claims, key)
	delete(c.owned[node], key)
	if len(c.owned[node]) == 0 {
		delete(c.owned, node)
	}
	c.version++
}
