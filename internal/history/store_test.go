package history_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

func TestStoreClaimsRoundTrip(t *testing.T) {
	ctx := t.Context()
	var writes int
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			writes++
			return c.Create(ctx, o, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			writes++
			return c.Update(ctx, o, opts...)
		},
	}).Build()
	s := history.NewStore(c, c, "csrguard")

	empty, _, err := s.LoadClaims(ctx)
	if err != nil || len(empty) != 0 {
		t.Fatalf("LoadClaims on an empty namespace = %v, %v", empty, err)
	}
	claims := map[string]policy.Claim{
		"10.0.0.1":           {Node: "node-a", Since: t0},
		"node-a":             {Node: "node-a", Since: t0},
		"2001:db8::1":        {Node: "node-b", Since: at(5), Released: at(60)},
		"node-b.example.com": {Node: "node-b", Since: at(5)},
	}
	if _, err := s.SaveClaims(ctx, claims, t0); err != nil {
		t.Fatal(err)
	}
	firstWrites := writes
	if firstWrites == 0 || firstWrites > 2 {
		t.Errorf("first save wrote %d ConfigMaps, want one per shard in use (1 or 2)", firstWrites)
	}
	// Saving the same claims again writes nothing.
	if _, err := s.SaveClaims(ctx, claims, t0); err != nil {
		t.Fatal(err)
	}
	if writes != firstWrites {
		t.Errorf("saving unchanged claims wrote %d more ConfigMaps", writes-firstWrites)
	}

	got, _, err := history.NewStore(c, nil, "csrguard").LoadClaims(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, claims); diff != "" {
		t.Errorf("claims after a round trip (-got +want):\n%s", diff)
	}

	// Claims of a node that lost them all are removed from its shard.
	delete(claims, "10.0.0.1")
	delete(claims, "node-a")
	if _, err := s.SaveClaims(ctx, claims, t0); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.LoadClaims(ctx)
	if diff := cmp.Diff(got, claims); diff != "" {
		t.Errorf("claims after removal (-got +want):\n%s", diff)
	}
}

// TestStoreClaimsUnusable: entries that are not claims are left out and reported, never an
// error that would stop every decision, and never a claim: not an entry for a key that is no
// address key, nor one of two Nodes recorded for the same key.
func TestStoreClaimsUnusable(t *testing.T) {
	good := `{"10.0.0.9":{"since":"2026-11-30T12:00:00Z"}}`
	tests := []struct {
		name         string
		data         map[string]string // by node, in shard 3
		want         map[string]policy.Claim
		wantProblems int
	}{
		{name: "not_json", data: map[string]string{"node-a": "10.0.0.1 2026-11-30T12:00:00Z\n", "node-b": good}, wantProblems: 1,
			want: map[string]policy.Claim{"10.0.0.9": {Node: "node-b", Since: t0}}},
		{name: "key_with_blank", data: map[string]string{"node-a": `{"10.0.0.5 ":{"since":"2026-11-30T12:00:00Z"}}`}, wantProblems: 1, want: map[string]policy.Claim{}},
		{name: "key_not_canonical", data: map[string]string{"node-a": `{"010.0.0.5":{"since":"2026-11-30T12:00:00Z"}}`}, wantProblems: 1, want: map[string]policy.Claim{}},
		{name: "no_time", data: map[string]string{"node-a": `{"10.0.0.5":{}}`}, wantProblems: 1, want: map[string]policy.Claim{}},
		{name: "since_after_2262", data: map[string]string{"node-a": `{"10.0.0.5":{"since":"3000-01-01T00:00:00Z"}}`, "node-b": good}, wantProblems: 1,
			want: map[string]policy.Claim{"10.0.0.9": {Node: "node-b", Since: t0}}},
		{name: "released_after_2262", data: map[string]string{"node-a": `{"10.0.0.5":{"since":"2026-11-30T12:00:00Z","released":"2500-01-01T00:00:00Z"}}`}, wantProblems: 1, want: map[string]policy.Claim{}},
		{name: "since_before_1678", data: map[string]string{"node-a": `{"10.0.0.5":{"since":"1000-01-01T00:00:00Z"}}`}, wantProblems: 1, want: map[string]policy.Claim{}},
		{name: "two_owners", data: map[string]string{
			"node-a": `{"10.0.0.5":{"since":"2026-11-30T12:00:00Z"}}`,
			"node-b": `{"10.0.0.5":{"since":"2020-01-01T00:00:00Z"},"10.0.0.9":{"since":"2026-11-30T12:00:00Z"}}`,
		}, wantProblems: 1, want: map[string]policy.Claim{"10.0.0.9": {Node: "node-b", Since: t0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "csrguard", Name: history.ClaimConfigMaps()[3]}, Data: tt.data}
			c := fake.NewClientBuilder().WithObjects(cm).Build()
			got, problems, err := history.NewStore(c, c, "csrguard").LoadClaims(t.Context())
			if err != nil {
				t.Fatalf("LoadClaims() error = %v, want none", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("claims (-got +want):\n%s", diff)
			}
			if len(problems) != tt.wantProblems {
				t.Errorf("problems = %q, want %d", problems, tt.wantProblems)
			}
		})
	}
}

// TestStoreSaveClaimsEveryShard: a shard that cannot be written does not keep the others from
// being written, the error says which, and that shard alone is retried with backoff.
func TestStoreSaveClaimsEveryShard(t *testing.T) {
	failing := history.ClaimConfigMaps()[0]
	broken := true
	attempts := map[string]int{}
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			attempts[o.GetName()]++
			if o.GetName() == failing && broken {
				return errors.New("quota exceeded")
			}
			return c.Create(ctx, o, opts...)
		},
	}).Build()
	claims := map[string]policy.Claim{}
	for i := range 64 {
		claims[fmt.Sprintf("10.0.1.%d", i)] = policy.Claim{Node: fmt.Sprintf("node-%d", i), Since: t0}
	}
	store := history.NewStore(c, c, "csrguard")
	pending, err := store.SaveClaims(t.Context(), claims, t0)
	if err == nil || !strings.Contains(err.Error(), "quota exceeded") || !pending {
		t.Fatalf("SaveClaims() = %v, %v; want pending and the failed shard's error", pending, err)
	}
	got, _, _ := history.NewStore(c, nil, "csrguard").LoadClaims(t.Context())
	if len(got) == 0 || len(got) == len(claims) {
		t.Errorf("%d of %d claims saved, want all but those of the failing shard", len(got), len(claims))
	}

	// Within its backoff the failed shard is not tried again, and nothing else is rewritten.
	before := maps.Clone(attempts)
	if pending, err := store.SaveClaims(t.Context(), claims, t0.Add(500*time.Millisecond)); err != nil || !pending {
		t.Errorf("SaveClaims() within the backoff = %v, %v; want pending, no error", pending, err)
	}
	if !maps.Equal(attempts, before) {
		t.Errorf("writes within the backoff: %v, want none beyond %v", attempts, before)
	}
	// After it, the shard is written and nothing is pending.
	broken = false
	if pending, err := store.SaveClaims(t.Context(), claims, t0.Add(time.Second)); err != nil || pending {
		t.Errorf("SaveClaims() after the backoff = %v, %v; want done", pending, err)
	}
	if got, _, _ := history.NewStore(c, nil, "csrguard").LoadClaims(t.Context()); len(got) != len(claims) {
		t.Errorf("%d of %d claims saved after the retry", len(got), len(claims))
	}
}

// TestStoreSaveClaimsOverfullShard: Nodes that fill a shard lose their record, newest first
// whatever their size, and the shard is still written with the older Nodes' claims.
func TestStoreSaveClaimsOverfullShard(t *testing.T) {
	c := fake.NewClientBuilder().Build()
	// node-a is old and has the largest record of all.
	claims := map[string]policy.Claim{}
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "."
	for k := range history.MaxKeysPerNode {
		claims[fmt.Sprintf("%svictim%02d", long, k)] = policy.Claim{Node: "node-a", Since: t0.Add(-time.Hour)}
	}
	for n := range 150 * history.ClaimShards { // about 1.3 MiB a shard
		for k := range history.MaxKeysPerNode / 2 {
			claims[fmt.Sprintf("%sn%04dk%02d", long, n, k)] = policy.Claim{Node: fmt.Sprintf("jam-%d", n), Since: t0.Add(time.Duration(n) * time.Second)}
		}
	}
	pending, err := history.NewStore(c, c, "csrguard").SaveClaims(t.Context(), claims, t0)
	if err == nil || !strings.Contains(err.Error(), "left out the claims of nodes jam-") || pending {
		t.Fatalf("SaveClaims() = %v, %v; want done, saying which nodes were left out", pending, err)
	}
	got, _, err := history.NewStore(c, nil, "csrguard").LoadClaims(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for key, cl := range got {
		if cl.Node == "node-a" {
			kept++
		}
		if want := claims[key]; cl != want {
			t.Errorf("claim on %s = %v, want %v", key, cl, want)
		}
	}
	if kept != history.MaxKeysPerNode || len(got) >= len(claims) {
		t.Errorf("saved %d of %d claims, %d of node-a's; want all of node-a's and not all", len(got), len(claims), kept)
	}
}

func TestStoreIdentityMerges(t *testing.T) {
	ctx := t.Context()
	c := fake.NewClientBuilder().Build()
	a, b := history.NewStore(c, c, "csrguard"), history.NewStore(c, c, "csrguard")

	idA := history.Identity{}
	idA.Observe(map[string][]string{"192.0.2.10": {"endpointslice"}, "API.K8s.Example.": {"certificate"}}, t0)
	idB := history.Identity{}
	idB.Observe(map[string][]string{"192.0.2.10": {"certificate"}, "192.0.2.11": {"endpointslice"}}, at(7200))
	// Two replicas save what each saw; neither loses the other's.
	if _, err := a.SaveIdentity(ctx, idA); err != nil {
		t.Fatal(err)
	}
	merged, err := b.SaveIdentity(ctx, idB)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.LoadIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := history.Identity{
		"192.0.2.10":      {FirstSeen: t0, LastSeen: at(7200), Sources: []string{"certificate", "endpointslice"}},
		"192.0.2.11":      {FirstSeen: at(7200), LastSeen: at(7200), Sources: []string{"endpointslice"}},
		"api.k8s.example": {FirstSeen: t0, LastSeen: t0, Sources: []string{"certificate"}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("identity (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(merged, want); diff != "" {
		t.Errorf("SaveIdentity returned (-got +want):\n%s", diff)
	}
	addrs, names := got.Split()
	if diff := cmp.Diff(fmt.Sprint(addrs, names), fmt.Sprint([]netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}, []string{"api.k8s.example"})); diff != "" {
		t.Errorf("Split (-got +want):\n%s", diff)
	}
}

func TestIdentityObserveAndExpire(t *testing.T) {
	id := history.Identity{}
	if !id.Observe(map[string][]string{"::ffff:192.0.2.10": {"endpointslice"}}, t0) {
		t.Error("Observe of a new address reports no change")
	}
	if id.Observe(map[string][]string{"192.0.2.10": {"endpointslice"}}, t0.Add(59*time.Minute)) {
		t.Error("Observe within the hour reports a change: writes would not stay rare")
	}
	if !id.Observe(map[string][]string{"192.0.2.10": {"endpointslice"}}, t0.Add(time.Hour)) {
		t.Error("Observe an hour later reports no change: LastSeen would not advance")
	}
	if !id.Observe(map[string][]string{"192.0.2.10": {"certificate"}}, t0.Add(time.Hour)) {
		t.Error("Observe from a new source reports no change")
	}
	if id.Observe(map[string][]string{"": {"flag"}, "*.example.com": {"certificate"}}, t0) || len(id) != 1 {
		t.Errorf("Observe kept an empty key or a wildcard: %v", id)
	}
	retention := 8760 * time.Hour
	if id.Expire(t0.Add(time.Hour+retention), retention) {
		t.Error("Expire at exactly the retention forgot the address")
	}
	if !id.Expire(t0.Add(time.Hour+retention+time.Second), retention) || len(id) != 0 {
		t.Errorf("Expire after the retention kept %v", id)
	}
}

// TestStoreSaveClaimsAfterAmbiguousFailure: a write that reports an error may still have been
// applied (a timeout after the commit). When the claims then come back to what was last
// written before it, the Store must not take the ConfigMap for unchanged: it holds the failed
// write's content. Here that is the owner's claim released, which a restart after the settle
// time would drop, handing the address to whichever Node reports it then.
func TestStoreSaveClaimsAfterAmbiguousFailure(t *testing.T) {
	ambiguous := false
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			if err := c.Update(ctx, o, opts...); err != nil || !ambiguous {
				return err
			}
			return errors.New("context deadline exceeded")
		},
	}).Build()
	s := history.NewStore(c, c, "csrguard")
	live := map[string]policy.Claim{"10.0.0.1": {Node: "owner", Since: t0}}
	if _, err := s.SaveClaims(t.Context(), live, t0); err != nil {
		t.Fatal(err)
	}
	ambiguous = true
	released := map[string]policy.Claim{"10.0.0.1": {Node: "owner", Since: t0, Released: at(10)}}
	if pending, err := s.SaveClaims(t.Context(), released, at(10)); err == nil || !pending {
		t.Fatalf("SaveClaims() = %v, %v; want pending and the error", pending, err)
	}
	ambiguous = false
	// The owner reports the address again before the backoff is over.
	if pending, err := s.SaveClaims(t.Context(), live, at(20)); err != nil || pending {
		t.Fatalf("SaveClaims() = %v, %v; want done", pending, err)
	}
	checkRecorded(t, c, live)
}

// TestStoreForgetSaved: a standby loads the claims at its start; the leader then writes a
// change and leaves before the change is undone. The standby, elected, has the claims as it
// loaded them and must still write them: the ConfigMap holds the old leader's change. It
// creates no ConfigMap for an empty shard doing so.
func TestStoreForgetSaved(t *testing.T) {
	var creates int
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			creates++
			return c.Create(ctx, o, opts...)
		},
	}).Build()
	live := map[string]policy.Claim{"10.0.0.1": {Node: "owner", Since: t0}}
	if _, err := history.NewStore(c, c, "csrguard").SaveClaims(t.Context(), live, t0); err != nil {
		t.Fatal(err)
	}
	standby := history.NewStore(c, c, "csrguard")
	if _, _, err := standby.LoadClaims(t.Context()); err != nil {
		t.Fatal(err)
	}
	released := map[string]policy.Claim{"10.0.0.1": {Node: "owner", Since: t0, Released: at(10)}}
	if _, err := history.NewStore(c, c, "csrguard").SaveClaims(t.Context(), released, at(10)); err != nil {
		t.Fatal(err)
	}
	standby.ForgetSaved()
	creates = 0
	if pending, err := standby.SaveClaims(t.Context(), live, at(20)); err != nil || pending {
		t.Fatalf("SaveClaims() = %v, %v; want done", pending, err)
	}
	checkRecorded(t, c, live)
	if creates != 0 {
		t.Errorf("created %d ConfigMaps for empty shards, want none", creates)
	}
}

// checkRecorded fails t unless the claims recorded through c are want.
func checkRecorded(t *testing.T, c client.Reader, want map[string]policy.Claim) {
	t.Helper()
	got, _, err := history.NewStore(c, nil, "csrguard").LoadClaims(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("recorded claims (-got +want):\n%s", diff)
	}
}
