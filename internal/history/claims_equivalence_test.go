package history_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

// TestClaimsEquivalence drives Claims and refClaims, the implementation before its compact
// representation (claims_reference_test.go), through the same random sequences of what the
// Keeper does: Nodes reporting, changing and dropping addresses, many Nodes sharing a few keys,
// Nodes reporting more than MaxKeysPerNode or churning through addresses, deletions, time
// passing and claims ending, and restarts (save, load, Sync). After every step every query
// must answer the same, versions included, and every save must write the same ConfigMaps.
func TestClaimsEquivalence(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2026)) //nolint:gosec // G404: a fixed seed, so that a failing sequence repeats
	hot := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1", "n0", "n1", "shared.example.com"}
	var churn []string
	for i := range 2 * history.MaxKeysPerNode {
		churn = append(churn, fmt.Sprintf("10.9.%d.%d", i/256, i%256))
	}
	queried := append(append([]string{"", "unknown"}, hot...), churn...)
	for seq := range 150 { // 3,000 found nothing more (an attacker review, 87 s); 150 keep make test cheap under -race
		settle := []time.Duration{time.Second, 10 * time.Second, time.Minute}[rng.IntN(3)]
		nodeNames := []string{"n0", "n1", "n2", "n3", "n4", "n5"}[:2+rng.IntN(5)]
		randomKeys := func() []string {
			var keys []string
			for range rng.IntN(4) {
				keys = append(keys, hot[rng.IntN(len(hot))])
			}
			if rng.IntN(6) == 0 { // a churning Node, sometimes over the limit
				from := rng.IntN(len(churn) / 2)
				keys = append(keys, churn[from:min(from+rng.IntN(history.MaxKeysPerNode+6), len(churn))]...)
			}
			rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			return keys
		}
		now := t0
		current := map[string][]string{}
		for _, n := range nodeNames {
			if rng.IntN(3) > 0 {
				current[n] = randomKeys()
			}
		}
		recorded := map[string]policy.Claim{}
		for range rng.IntN(6) {
			cl := policy.Claim{Node: []string{"n0", "n1", "gone"}[rng.IntN(3)], Since: now.Add(-time.Hour)}
			if rng.IntN(2) == 0 {
				cl.Released = now.Add(-time.Duration(rng.IntN(int(2 * settle))))
			}
			recorded[hot[rng.IntN(len(hot))]] = cl
		}
		if rng.IntN(4) == 0 { // a record over MaxKeysPerNode for one Node: a hand edit, or an older csrguard's
			owner := []string{"n0", "n1", "gone"}[rng.IntN(3)]
			for i, key := range churn[:rng.IntN(len(churn))] {
				cl := policy.Claim{Node: owner, Since: now.Add(-time.Hour)}
				if rng.IntN(3) > 0 {
					cl.Released = now.Add(-time.Duration(rng.IntN(int(2 * settle)))).Add(time.Duration(i%3) * time.Millisecond)
				}
				recorded[key] = cl
			}
		}
		got, want := history.NewClaims(settle), newRefClaims(settle)
		e := &equivalence{t: t, seq: seq, keys: queried, got: got, want: want}
		e.compare("before Sync")
		got.Sync(recorded, current, now)
		want.Sync(recorded, current, now)
		e.compare("Sync")
		for step := range 60 {
			node := nodeNames[rng.IntN(len(nodeNames))]
			var what string
			switch op := rng.IntN(10); {
			case op < 5:
				keys := randomKeys()
				current[node] = keys
				got.SetNode(node, slices.Clone(keys), now)
				want.SetNode(node, slices.Clone(keys), now)
				what = fmt.Sprintf("SetNode(%s, %v)", node, keys)
			case op < 6:
				delete(current, node)
				got.DeleteNode(node, now)
				want.DeleteNode(node, now)
				what = "DeleteNode(" + node + ")"
			case op < 9: // time passes; the Keeper ends what is due
				now = now.Add(time.Duration(rng.Int64N(int64(2 * settle))))
				g, _ := got.NextExpiry()
				w, _ := want.NextExpiry()
				if rng.IntN(4) == 0 || !g.IsZero() && !now.Before(g) || !w.IsZero() && !now.Before(w) {
					if g, w := got.Expire(now), want.Expire(now); !reflect.DeepEqual(g, w) {
						t.Fatalf("sequence %d step %d: Expire(%v) = %v, want %v", seq, step, now, g, w)
					}
				}
				what = fmt.Sprintf("time to %v", now.Sub(t0))
			default: // a restart: save, load, Sync with the Nodes as they are
				loaded := e.saveAndLoad(now)
				got, want = history.NewClaims(settle), newRefClaims(settle)
				e.got, e.want = got, want
				got.Sync(loaded, current, now)
				want.Sync(loaded, current, now)
				what = "restart"
			}
			e.compare(fmt.Sprintf("step %d, %s", step, what))
		}
		e.saveAndLoad(now)
	}
}

// equivalence compares Claims with refClaims.
type equivalence struct {
	t    *testing.T
	seq  int
	keys []string // every key any step may report, and some no Node does
	got  *history.Claims
	want *refClaims
}

// compare fails the test unless every query answers the same.
func (e *equivalence) compare(after string) {
	e.t.Helper()
	check := func(what string, got, want any) {
		e.t.Helper()
		if !reflect.DeepEqual(got, want) {
			e.t.Fatalf("sequence %d, after %s: %s differs (-got +want):\n%s", e.seq, after, what, cmp.Diff(got, want))
		}
	}
	type answer struct {
		Claim      policy.Claim
		OK, Synced bool
	}
	for _, key := range e.keys {
		var g, w answer
		g.Claim, g.OK, g.Synced = e.got.Get(key)
		w.Claim, w.OK, w.Synced = e.want.Get(key)
		if g != w { // == on time.Time: the same instant, monotonic reading and location
			check("Get("+key+")", g, w)
		}
	}
	gs, gv := e.got.Snapshot()
	ws, wv := e.want.Snapshot()
	check("Snapshot", gs, ws)
	check("version", gv, wv)
	gn, gok := e.got.NextExpiry()
	wn, wok := e.want.NextExpiry()
	check("NextExpiry", []any{gn, gok}, []any{wn, wok})
	check("Nodes", e.got.Nodes(), e.want.Nodes())
	check("Conflicts", e.got.Conflicts(), e.want.Conflicts())
}

// saveAndLoad saves both sides' claims in Stores of their own, fails the test unless the
// ConfigMaps written are the same, and returns what loading them gives.
func (e *equivalence) saveAndLoad(now time.Time) map[string]policy.Claim {
	e.t.Helper()
	ctx := context.Background()
	var data [2][]map[string]string
	var loaded [2]map[string]policy.Claim
	for i, snap := range []func() (map[string]policy.Claim, uint64){e.got.Snapshot, e.want.Snapshot} {
		c := configMaps{data: map[string]map[string]string{}}
		s := history.NewStore(c, c, "csrguard")
		claims, _ := snap()
		if pending, err := s.SaveClaims(ctx, claims, now); pending || err != nil {
			e.t.Fatalf("sequence %d: SaveClaims = %v, %v", e.seq, pending, err)
		}
		for _, name := range history.ClaimConfigMaps() {
			data[i] = append(data[i], c.data[name])
		}
		var err error
		if loaded[i], _, err = s.LoadClaims(ctx); err != nil {
			e.t.Fatal(err)
		}
	}
	if diff := cmp.Diff(data[0], data[1]); diff != "" {
		e.t.Fatalf("sequence %d: saved ConfigMaps differ (-got +want):\n%s", e.seq, diff)
	}
	return loaded[0]
}

// configMaps is a client of ConfigMaps in one namespace that holds only their data: the fake
// client, far slower to build, would make the test take a minute.
// Any other call panics.
type configMaps struct {
	client.Client // nil
	data          map[string]map[string]string
}

func (c configMaps) Get(_ context.Context, key client.ObjectKey, o client.Object, _ ...client.GetOption) error {
	data, ok := c.data[key.Name]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, key.Name)
	}
	o.(*corev1.ConfigMap).Data = maps.Clone(data)
	return nil
}

func (c configMaps) Create(_ context.Context, o client.Object, _ ...client.CreateOption) error {
	c.data[o.GetName()] = maps.Clone(o.(*corev1.ConfigMap).Data)
	return nil
}

func (c configMaps) Update(_ context.Context, o client.Object, _ ...client.UpdateOption) error {
	c.data[o.GetName()] = maps.Clone(o.(*corev1.ConfigMap).Data)
	return nil
}
