package nodes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/csrguard/csrguard/internal/policy"
)

func node(name string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))}}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

var cpKeys = []string{policy.ControlPlaneLabel}

func synced(_ *testing.T, objs ...*corev1.Node) *Store { return Of(cpKeys, objs...) }

// TestStoreMatchesScan: after every step of random additions, updates, deletions and relists of
// Nodes whose names and addresses collide in every way — an address equal to another Node's
// name, names that read as IPs (010.0.0.1 is 10.0.0.1), upper case and trailing dots, IPv4-mapped
// IPv6, names under other names — Get, WithAddress and UnderName answer what a scan of the
// current Nodes answers, and UnderName with the policy's limit of 2 names another Node than the
// requester whenever there is one.
func TestStoreMatchesScan(t *testing.T) {
	names := []string{"a", "a.b", "a.b.c", "a.c", "b", "10.0.0.1", "010.0.0.1", "10.0.0.2", "node-a"}
	values := []string{"a", "A.", "a.b", "A.B.", "a.b.c", "b", "10.0.0.1", "010.0.0.1", "::ffff:10.0.0.1", "10.0.0.2", "node-a", "x.a", "fd00::1"}
	types := []corev1.NodeAddressType{corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS, corev1.NodeInternalIP, corev1.NodeExternalIP}
	keys := []string{"a", "a.b", "a.b.c", "a.c", "b", "10.0.0.1", "010.0.0.1", "10.0.0.2", "node-a", "x.a", "fd00::1", "x"}
	rng := rand.New(rand.NewPCG(13, 4)) //nolint:gosec // a fixed seed, so that a failure repeats: nothing secret
	random := func(name string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for range rng.IntN(4) {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: types[rng.IntN(len(types))], Address: values[rng.IntN(len(values))]})
		}
		return n
	}
	s := synced(t)
	current := map[string]*corev1.Node{}
	for step := range 400 {
		name := names[rng.IntN(len(names))]
		switch op := rng.IntN(10); {
		case op < 5:
			n := random(name)
			current[name] = n
			if err := s.Update(n); err != nil {
				t.Fatal(err)
			}
		case op < 8:
			if n := current[name]; n != nil {
				delete(current, name)
				if err := s.Delete(n.DeepCopy()); err != nil {
					t.Fatal(err)
				}
			}
		default: // a relist: some Nodes changed, some gone, some new, a few listed twice
			var list []any
			current = map[string]*corev1.Node{}
			for _, name := range names {
				for range min(rng.IntN(4), 2) {
					n := random(name)
					current[name] = n // the last copy wins
					list = append(list, n.DeepCopy())
				}
			}
			if err := s.Replace(list, fmt.Sprint(step)); err != nil {
				t.Fatal(err)
			}
		}
		desc := fmt.Sprintf("step %d, nodes %v", step, describe(current))
		for _, name := range names {
			got, err := s.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			want := current[name]
			if (got == nil) != (want == nil) || want != nil && !slices.Equal(got.Addresses, want.Status.Addresses) {
				t.Fatalf("%s: Get(%q) = %v, want %v", desc, name, got, want)
			}
		}
		for _, key := range keys {
			withAddress, underName := []string{}, []string{}
			for _, n := range current {
				if slices.Contains(policy.AddressKeys(n.Status.Addresses), key) {
					withAddress = append(withAddress, n.Name)
				}
				if slices.Contains(policy.NamePrefixes(n.Name), key) {
					underName = append(underName, n.Name)
				}
			}
			slices.Sort(withAddress)
			slices.Sort(underName)
			got, err := s.WithAddress(key)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(got); !slices.Equal(got, withAddress) {
				t.Fatalf("%s: WithAddress(%q) = %v, want %v", desc, key, got, withAddress)
			}
			got, err = s.UnderName(key, 0)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(got); !slices.Equal(got, underName) {
				t.Fatalf("%s: UnderName(%q, 0) = %v, want %v", desc, key, got, underName)
			}
			got, err = s.UnderName(key, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, requester := range names {
				if requester == key {
					continue // the policy does not ask for its own name
				}
				other := slices.ContainsFunc(underName, func(n string) bool { return n != requester })
				if len(got) > 2 || len(got) != len(slices.Compact(slices.Sorted(slices.Values(got)))) ||
					other != slices.ContainsFunc(got, func(n string) bool { return n != requester }) {
					t.Fatalf("%s: UnderName(%q, 2) = %v for requester %q, want two at most of %v, another if any", desc, key, got, requester, underName)
				}
			}
		}
		all, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(current) {
			t.Fatalf("%s: List() has %d Nodes, want %d", desc, len(all), len(current))
		}
	}
}

// TestStoreDelete: a Node deleted by a tombstone, with or without its last state, is gone from
// every index; a Node never seen is no change.
func TestStoreDelete(t *testing.T) {
	s := synced(t, node("a.b", "10.0.0.1"), node("a.c", "10.0.0.2"))
	for _, obj := range []any{
		toolscache.DeletedFinalStateUnknown{Key: "a.b", Obj: node("a.b")},
		toolscache.DeletedFinalStateUnknown{Key: "a.c"},
		node("never-seen"),
	} {
		if err := s.Delete(obj); err != nil {
			t.Fatalf("Delete(%v) = %v", obj, err)
		}
	}
	for _, key := range []string{"10.0.0.1", "10.0.0.2"} {
		if got, _ := s.WithAddress(key); len(got) != 0 {
			t.Errorf("WithAddress(%s) = %v after the deletions", key, got)
		}
	}
	if got, _ := s.UnderName("a", 0); len(got) != 0 {
		t.Errorf("UnderName(a) = %v after the deletions", got)
	}
}

// TestKeys: the keys a Node is indexed under are policy.AddressKeys of its addresses, for many
// addresses too (one pass and a sort, not a search per key).
func TestKeys(t *testing.T) {
	var addrs []corev1.NodeAddress
	for i := range 20000 {
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: fmt.Sprintf("N%06d.EXAMPLE", i%15000)})
	}
	addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "010.0.0.1"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"})
	if got, want := (&Node{Node: policy.Node{Addresses: addrs}}).Keys(), policy.AddressKeys(addrs); !slices.Equal(got, want) {
		t.Errorf("Keys() has %d keys, policy.AddressKeys %d", len(got), len(want))
	}
}

// TestUnderNameCostsTheLimit: asking for two Nodes under a prefix that thousands share copies
// two names, not thousands (the policy asks with a limit of 2 at every evaluation).
func TestUnderNameCostsTheLimit(t *testing.T) {
	var list []any
	for i := range 5000 {
		list = append(list, node(fmt.Sprintf("cn-hangzhou.10-0-%d-%d", i/256, i%256)))
	}
	s := synced(t)
	if err := s.Replace(list, "2"); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if got, _ := s.UnderName("cn-hangzhou", 2); len(got) != 2 {
			t.Fatalf("UnderName(cn-hangzhou, 2) = %v", got)
		}
	}
	runtime.ReadMemStats(&after)
	// Two names and their slice, whatever the number of Nodes under the prefix (80 kB before).
	if perCall := (after.TotalAlloc - before.TotalAlloc) / 10; perCall > 1024 {
		t.Errorf("UnderName(cn-hangzhou, 2) allocated %d B per call", perCall)
	}
}

func describe(nodes map[string]*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, fmt.Sprintf("%s%v", n.Name, n.Status.Addresses))
	}
	slices.Sort(out)
	return out
}

// TestStoreNotSynced: before the first list every lookup fails, so that the policy holds rather
// than take an empty store for a cluster where nobody else reports an address.
func TestStoreNotSynced(t *testing.T) {
	s := NewStore(nil, cpKeys)
	if err := s.Add(node("node-a", "10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("node-a"); !errors.Is(err, ErrNotSynced) {
		t.Errorf("Get before sync: error = %v, want ErrNotSynced", err)
	}
	if _, err := s.WithAddress("10.0.0.1"); !errors.Is(err, ErrNotSynced) {
		t.Errorf("WithAddress before sync: error = %v, want ErrNotSynced", err)
	}
	if _, err := s.UnderName("node-a", 2); !errors.Is(err, ErrNotSynced) {
		t.Errorf("UnderName before sync: error = %v, want ErrNotSynced", err)
	}
	if _, err := s.List(); !errors.Is(err, ErrNotSynced) {
		t.Errorf("List before sync: error = %v, want ErrNotSynced", err)
	}
	if s.HasSynced() {
		t.Error("HasSynced before the first Replace")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Subscribe(ctx, func([]*Node) {}, func(_, _ *Node) {}); err == nil {
		t.Error("Subscribe with init before sync returned before ctx ended")
	}
	if err := s.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.WithAddress("10.0.0.1"); err != nil || len(got) != 0 {
		t.Errorf("WithAddress after an empty list = %v, %v; want none, nil", got, err)
	}
}

// TestStoreSubscribe: init sees the Nodes as they are, changed every change after, in order; a
// status heartbeat (nothing kept changes) and an unchanged relist are no change; a relist
// deletes the Nodes it lacks; after the returned function nothing more is seen.
func TestStoreSubscribe(t *testing.T) {
	s := synced(t, node("node-a", "10.0.0.1"), node("node-b", "10.0.0.2"))
	var seen []string
	say := func(old, cur *Node) {
		switch {
		case old == nil:
			seen = append(seen, "add "+cur.Name+fmt.Sprint(cur.Keys()))
		case cur == nil:
			seen = append(seen, "delete "+old.Name)
		default:
			seen = append(seen, "update "+cur.Name+fmt.Sprint(old.Keys())+"->"+fmt.Sprint(cur.Keys()))
		}
	}
	stop, err := s.Subscribe(t.Context(), func(all []*Node) {
		for _, n := range all {
			say(nil, n)
		}
	}, say)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(seen) // init's order is the map's
	heartbeat := node("node-a", "10.0.0.1")
	heartbeat.ResourceVersion = "2"
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	heartbeat.Labels = map[string]string{"topology.kubernetes.io/zone": "a"}
	cp := node("node-b", "10.0.0.2")
	cp.Labels = map[string]string{policy.ControlPlaneLabel: ""}
	for _, step := range []func() error{
		func() error { return s.Update(heartbeat) },
		func() error { return s.Update(node("node-a", "10.0.0.3")) },
		func() error { return s.Add(node("node-c")) },
		func() error { return s.Update(cp) },
		func() error { return s.Replace([]any{node("node-a", "10.0.0.3"), cp}, "5") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if err := s.Delete(node("node-a")); err != nil {
		t.Fatal(err)
	}
	want := []string{"add node-a[10.0.0.1]", "add node-b[10.0.0.2]", "update node-a[10.0.0.1]->[10.0.0.3]", "add node-c[]", "update node-b[10.0.0.2]->[10.0.0.2]", "delete node-c"}
	if diff := cmp.Diff(seen, want); diff != "" {
		t.Errorf("changes seen (-got +want):\n%s", diff)
	}
	if n, _ := s.Get("node-b"); n == nil || n.Labels[policy.ControlPlaneLabel] != "" || len(n.Labels) != 1 {
		t.Errorf("node-b's labels = %v, want the control-plane label alone", n)
	}
	if n, _ := s.Get("node-a"); n != nil {
		t.Errorf("node-a after its deletion = %v", n)
	}
}

// TestTrim: the watch-list's own store keeps Nodes trimmed, in place, and what the Store keeps
// of a trimmed Node is what it keeps of the whole one.
func TestTrim(t *testing.T) {
	s := NewStore(nil, cpKeys)
	n := node("node-a", "10.0.0.1")
	n.Labels = map[string]string{policy.ControlPlaneLabel: "", "kubernetes.io/os": "linux"}
	n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Spec.PodCIDR = "10.244.0.0/24"
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10260
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	whole := FromAPI(n, cpKeys)
	got, err := s.Transformer()(n)
	if err != nil || got != n {
		t.Fatalf("Transformer() = %p, %v; want the Node itself, trimmed", got, err)
	}
	want := node("node-a", "10.0.0.1")
	want.Labels = map[string]string{policy.ControlPlaneLabel: ""}
	want.Status.DaemonEndpoints.KubeletEndpoint.Port = 10260
	if diff := cmp.Diff(n, want); diff != "" {
		t.Errorf("trimmed Node (-got +want):\n%s", diff)
	}
	if !FromAPI(n, cpKeys).equal(whole) {
		t.Errorf("FromAPI of the trimmed Node = %+v, of the whole = %+v", FromAPI(n, cpKeys), whole)
	}
	if whole.KubeletPort != 10260 || !slices.Equal(whole.Keys(), []string{"10.0.0.1"}) {
		t.Errorf("FromAPI() = %+v", whole)
	}
}

// TestStoreStart runs the Store under client-go's own Reflector against a fake clientset: the
// first list syncs it, and a watched change reaches a subscriber.
func TestStoreStart(t *testing.T) {
	cs := fake.NewClientset(node("node-a", "10.0.0.1"))
	s := NewStore(ListWatch(cs), cpKeys)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	changed := make(chan *Node, 10)
	var initial []*Node
	stop, err := s.Subscribe(ctx, func(all []*Node) { initial = all }, func(_, cur *Node) { changed <- cur })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if len(initial) != 1 || initial[0].Name != "node-a" {
		t.Fatalf("initial Nodes = %v, want node-a", initial)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("node-b", "10.0.0.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-changed:
		if n == nil || n.Name != "node-b" {
			t.Errorf("change = %v, want node-b added", n)
		}
	case <-time.After(wait.ForeverTestTimeout):
		t.Fatal("no change seen for the created Node")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start() = %v", err)
	}
}
