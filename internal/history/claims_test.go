package history_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// at returns t0 plus s seconds.
func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// step is one thing that happens to Claims: a Node's keys change, it is deleted, or time passes.
type step struct {
	at     int      // seconds after t0
	node   string   // with keys: SetNode; with del: DeleteNode; empty: Expire
	keys   []string //
	del    bool
	gained []string // for Expire: the Nodes that must gain a claim
}

func TestClaims(t *testing.T) {
	const settle = 60 // seconds
	tests := []struct {
		name       string
		recorded   map[string]policy.Claim
		initial    map[string][]string
		steps      []step
		want       map[string]policy.Claim
		conflicts  []history.Conflict
		wantSynced bool
	}{
		{
			name:    "sole_reporters_claim_at_sync",
			initial: map[string][]string{"a": {"10.0.0.1", "a"}, "b": {"10.0.0.2"}},
			want: map[string]policy.Claim{
				"10.0.0.1": {Node: "a", Since: t0}, "a": {Node: "a", Since: t0}, "10.0.0.2": {Node: "b", Since: t0},
			},
		},
		{
			name:      "shared_at_sync_is_contested",
			initial:   map[string][]string{"a": {"10.0.0.1"}, "b": {"10.0.0.1"}},
			want:      map[string]policy.Claim{},
			conflicts: []history.Conflict{{Node: "a", Key: "10.0.0.1"}, {Node: "b", Key: "10.0.0.1"}},
		},
		{
			name:    "squatter_after_owner",
			initial: map[string][]string{"a": {"10.0.0.1"}, "b": {"10.0.0.2"}},
			steps:   []step{{at: 5, node: "b", keys: []string{"10.0.0.2", "10.0.0.1"}}},
			want: map[string]policy.Claim{
				"10.0.0.1": {Node: "a", Since: t0}, "10.0.0.2": {Node: "b", Since: t0},
			},
			conflicts: []history.Conflict{{Node: "b", Key: "10.0.0.1", Owner: "a"}},
		},
		{
			name: "recorded_owner_beats_squatter_that_came_while_down",
			recorded: map[string]policy.Claim{
				"10.0.0.1": {Node: "a", Since: at(-3600)},
			},
			initial:   map[string][]string{"a": {"10.0.0.1"}, "b": {"10.0.0.1"}},
			want:      map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: at(-3600)}},
			conflicts: []history.Conflict{{Node: "b", Key: "10.0.0.1", Owner: "a"}},
		},
		{
			name:     "recorded_claim_of_gone_node_is_released",
			recorded: map[string]policy.Claim{"10.0.0.1": {Node: "gone", Since: at(-3600)}},
			initial:  map[string][]string{"b": {"10.0.0.1"}},
			want:     map[string]policy.Claim{"10.0.0.1": {Node: "gone", Since: at(-3600), Released: t0}},
			conflicts: []history.Conflict{
				{Node: "b", Key: "10.0.0.1", Owner: "gone"},
			},
		},
		{
			name:     "recorded_released_claim_reported_again",
			recorded: map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: at(-3600), Released: at(-10)}},
			initial:  map[string][]string{"a": {"10.0.0.1"}},
			want:     map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: at(-3600)}},
		},
		{
			// csrguard was down longer than the settle time: a's claim ran out meanwhile, and
			// it is not revived by a reporting the address again beside b.
			name:      "recorded_claim_that_ran_out_while_down_is_dropped",
			recorded:  map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: at(-3600), Released: at(-61)}},
			initial:   map[string][]string{"a": {"10.0.0.1"}, "b": {"10.0.0.1"}},
			want:      map[string]policy.Claim{},
			conflicts: []history.Conflict{{Node: "a", Key: "10.0.0.1"}, {Node: "b", Key: "10.0.0.1"}},
		},
		{
			name:    "owner_stops_then_claim_runs_out_to_new_holder",
			initial: map[string][]string{"a": {"10.0.0.1"}},
			steps: []step{
				{at: 10, node: "a", keys: []string{"10.0.0.9"}},
				{at: 20, node: "c", keys: []string{"10.0.0.1"}},
				{at: 69}, // not yet: released at 10, ends at 70
				{at: 70, gained: []string{"c"}},
			},
			want: map[string]policy.Claim{"10.0.0.1": {Node: "c", Since: at(70)}, "10.0.0.9": {Node: "a", Since: at(10)}},
		},
		{
			name:    "owner_reports_again_before_claim_runs_out",
			initial: map[string][]string{"a": {"10.0.0.1"}},
			steps: []step{
				{at: 10, node: "a", keys: nil},
				{at: 30, node: "a", keys: []string{"10.0.0.1"}},
				{at: 200},
			},
			want: map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: t0}},
		},
		{
			name:    "deleted_owner_keeps_claim_for_settle_time",
			initial: map[string][]string{"a": {"10.0.0.1"}, "b": {"10.0.0.1"}},
			steps: []step{
				{at: 1, node: "a", del: true},
			},
			// Contested at sync: nobody owns it; once a is gone b alone reports it.
			want: map[string]policy.Claim{"10.0.0.1": {Node: "b", Since: at(1)}},
		},
		{
			name:    "deleted_owner_reregisters_and_keeps_its_address",
			initial: map[string][]string{"a": {"10.0.0.1"}},
			steps: []step{
				{at: 5, node: "b", keys: []string{"10.0.0.1"}}, // squatter
				{at: 10, node: "a", del: true},
				{at: 40, node: "a", keys: []string{"10.0.0.1"}}, // replaced within the settle time
				{at: 500},
			},
			want:      map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: t0}},
			conflicts: []history.Conflict{{Node: "b", Key: "10.0.0.1", Owner: "a"}},
		},
		{
			name:    "contest_resolves_when_one_stops",
			initial: map[string][]string{"a": {"10.0.0.1"}, "b": {"10.0.0.1"}},
			steps:   []step{{at: 7, node: "b", keys: []string{"10.0.0.2"}}},
			want:    map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: at(7)}, "10.0.0.2": {Node: "b", Since: at(7)}},
		},
		{
			name:    "new_node_claims_new_address",
			initial: map[string][]string{},
			steps:   []step{{at: 3, node: "n", keys: []string{"n", "10.0.0.3"}}},
			want:    map[string]policy.Claim{"n": {Node: "n", Since: at(3)}, "10.0.0.3": {Node: "n", Since: at(3)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := history.NewClaims(settle * time.Second)
			if _, _, synced := c.Get("x"); synced {
				t.Fatal("Get before Sync reports synced")
			}
			c.Sync(tt.recorded, tt.initial, t0)
			for _, s := range tt.steps {
				switch {
				case s.del:
					c.DeleteNode(s.node, at(s.at))
				case s.node != "":
					c.SetNode(s.node, s.keys, at(s.at))
				default:
					if diff := cmp.Diff(c.Expire(at(s.at)), s.gained); diff != "" {
						t.Errorf("Expire(%ds) gained (-got +want):\n%s", s.at, diff)
					}
				}
			}
			got, _ := c.Snapshot()
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("claims (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(c.Conflicts(), tt.conflicts); diff != "" {
				t.Errorf("Conflicts (-got +want):\n%s", diff)
			}
			for key, want := range tt.want {
				if got, ok, synced := c.Get(key); !ok || !synced || got != want {
					t.Errorf("Get(%q) = %v, %v, %v; want %v", key, got, ok, synced, want)
				}
			}
		})
	}
}

func TestClaimsNextExpiryAndVersion(t *testing.T) {
	c := history.NewClaims(time.Minute)
	c.Sync(nil, map[string][]string{"a": {"10.0.0.1"}}, t0)
	if _, ok := c.NextExpiry(); ok {
		t.Error("NextExpiry with no released claim reports one")
	}
	_, v1 := c.Snapshot()
	c.SetNode("a", []string{"10.0.0.1"}, at(1)) // no change
	if _, v := c.Snapshot(); v != v1 {
		t.Errorf("version changed from %d to %d without a change", v1, v)
	}
	c.SetNode("a", nil, at(2))
	if next, ok := c.NextExpiry(); !ok || !next.Equal(at(62)) {
		t.Errorf("NextExpiry = %v, %v; want %v", next, ok, at(62))
	}
	if _, v := c.Snapshot(); v == v1 {
		t.Error("version did not change when a claim was released")
	}
}

// TestClaimsBounded: a Node reporting more than MaxKeysPerNode addresses keeps only that many in
// the bookkeeping, and is reported in conflict.
func TestClaimsBounded(t *testing.T) {
	var many []string
	for i := range 1000 {
		many = append(many, fmt.Sprintf("10.1.%d.%d", i/256, i%256))
	}
	c := history.NewClaims(time.Minute)
	c.Sync(nil, map[string][]string{"greedy": many}, t0)
	if got, _ := c.Snapshot(); len(got) != history.MaxKeysPerNode {
		t.Errorf("%d claims for a node reporting 1000 addresses, want %d", len(got), history.MaxKeysPerNode)
	}
	want := []history.Conflict{{Node: "greedy", Key: "(1000 addresses, over 64)"}}
	if diff := cmp.Diff(c.Conflicts(), want); diff != "" {
		t.Errorf("Conflicts (-got +want):\n%s", diff)
	}
	c.SetNode("greedy", many[:3], at(1))
	if len(c.Conflicts()) != 0 {
		t.Errorf("Conflicts after the node reports 3 addresses = %v, want none", c.Conflicts())
	}

	// A Node that keeps changing its addresses holds at most MaxKeysPerNode claims, released
	// ones included: it loses its oldest released claims, never its current ones.
	c = history.NewClaims(time.Hour)
	c.Sync(nil, map[string][]string{"churner": many[:history.MaxKeysPerNode]}, t0)
	for round := 1; round < 10; round++ {
		current := many[round*history.MaxKeysPerNode/2 : round*history.MaxKeysPerNode/2+history.MaxKeysPerNode]
		c.SetNode("churner", current, at(round))
		got, _ := c.Snapshot()
		if len(got) > history.MaxKeysPerNode {
			t.Fatalf("round %d: %d claims, want at most %d", round, len(got), history.MaxKeysPerNode)
		}
		for _, key := range current {
			if cl, ok := got[key]; !ok || !cl.Released.IsZero() {
				t.Fatalf("round %d: current address %s has claim %v, %v; want a live one", round, key, cl, ok)
			}
		}
	}
}

// TestClaimTimes: Claims keeps a claim's times in 8 bytes each. Any time reads back Equal to
// what was recorded, in UTC and to the nanosecond; the zero time stays zero; a time that Unix
// nanoseconds cannot hold reads back as the nearest that they can (Store leaves such recorded
// times out, TestStoreClaimsUnusable), and a release that far ahead still does not end.
func TestClaimTimes(t *testing.T) {
	never := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	latest, earliest := time.Unix(0, math.MaxInt64).UTC(), time.Unix(0, math.MinInt64).UTC()
	tests := []struct {
		name                    string
		since, released         time.Time
		wantSince, wantReleased time.Time
	}{
		{"nanoseconds", t0.Add(123 * time.Nanosecond), time.Time{}, t0.Add(123 * time.Nanosecond), time.Time{}},
		{"another zone", t0.In(time.FixedZone("CET", 3600)), time.Time{}, t0, time.Time{}},
		{"zero since", time.Time{}, time.Time{}, time.Time{}, time.Time{}},
		{"the Unix epoch", time.Unix(0, 0), time.Time{}, time.Unix(0, 1).UTC(), time.Time{}},
		{"far future", never, time.Time{}, latest, time.Time{}},
		{"far past", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, earliest, time.Time{}},
		{"released far ahead", t0, never, t0, latest},
		{"released now", t0, t0, t0, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := history.NewClaims(time.Minute)
			// The owner no longer reports the key: a recorded release stays as it was.
			c.Sync(map[string]policy.Claim{"10.0.0.1": {Node: "a", Since: tt.since, Released: tt.released}}, map[string][]string{"a": nil}, t0)
			got, ok, _ := c.Get("10.0.0.1")
			if !ok {
				t.Fatal("claim lost")
			}
			if tt.released.IsZero() {
				tt.wantReleased = t0 // Sync released it
			}
			want := policy.Claim{Node: "a", Since: tt.wantSince, Released: tt.wantReleased}
			if got != want {
				t.Errorf("claim = %+v, want %+v", got, want)
			}
			if got.Since.Location() != time.UTC {
				t.Errorf("since in %v, want UTC", got.Since.Location())
			}
			if c.Expire(t0.Add(time.Hour)); tt.released.Equal(never) {
				if _, ok, _ := c.Get("10.0.0.1"); !ok {
					t.Error("a claim released in the year 3000 ended an hour later")
				}
			}
		})
	}
}
