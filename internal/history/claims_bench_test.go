package history_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

// BenchmarkClaimsMemory measures what internal/history keeps per Node: 10,000 Nodes of two
// addresses (InternalIP and Hostname) registered one after another, driven through the calls
// the Keeper makes (LoadClaims, Sync, SetNode for every informer event, Snapshot and
// SaveClaims once a second while leading). It reports the heap still live afterwards, Claims
// and Store together, per Node ("B/node"), and what one save of them all allocates and drops
// ("save-B/node"). Every string is allocated afresh for each call, as decoding a Node does, so
// whatever Claims keeps of its arguments is counted. The ConfigMap writes go nowhere: what
// the API server keeps is not csrguard's memory.
func BenchmarkClaimsMemory(b *testing.B) {
	const nodes = 10000
	ctx := context.Background()
	discard := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return nil },
		Update: func(context.Context, client.WithWatch, client.Object, ...client.UpdateOption) error { return nil },
	}).Build()
	// Both arguments are decoded afresh for every event, as the informer does.
	addresses := func(i int) (string, []string) {
		name := fmt.Sprintf("node-%05d", i)
		return name, policy.AddressKeys([]corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255)},
			{Type: corev1.NodeHostName, Address: fmt.Sprintf("node-%05d", i)},
		})
	}
	var retained, saved float64
	for b.Loop() {
		before := heapInUse()
		store := history.NewStore(discard, discard, "csrguard")
		claims := history.NewClaims(5 * time.Minute)
		now := t0
		recorded, _, err := store.LoadClaims(ctx)
		if err != nil {
			b.Fatal(err)
		}
		claims.Sync(recorded, map[string][]string{}, now)
		save := func() {
			snap, _ := claims.Snapshot()
			if _, err := store.SaveClaims(ctx, snap, now); err != nil {
				b.Fatal(err)
			}
		}
		for i := range nodes {
			name, keys := addresses(i)
			claims.SetNode(name, keys, now)
			if i%500 == 499 { // nodes register at about 500/s
				now = now.Add(time.Second)
				save()
			}
		}
		// Status updates (heartbeats) of every Node: the same addresses, decoded again.
		for i := range nodes {
			name, keys := addresses(i)
			claims.SetNode(name, keys, now)
		}
		claims.SetNode("node-00000", nil, now) // one change, so that the last save writes
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		allocs := ms.TotalAlloc
		save()
		runtime.ReadMemStats(&ms)
		saved = float64(ms.TotalAlloc-allocs) / nodes
		retained = float64(heapInUse()-before) / nodes
		runtime.KeepAlive(claims)
		runtime.KeepAlive(store)
	}
	b.ReportMetric(retained, "B/node")
	b.ReportMetric(saved, "save-B/node")
}

// heapInUse returns the bytes of live heap objects after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
