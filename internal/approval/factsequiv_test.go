package approval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/policy"
)

// limitingReader applies client.Limit as the manager's cache does (the fake client ignores it):
// the first Limit objects the index yields.
type limitingReader struct{ client.Reader }

func (r limitingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.Reader.List(ctx, list, opts...); err != nil {
		return err
	}
	var o client.ListOptions
	o.ApplyOptions(opts)
	if nodes, ok := list.(*corev1.NodeList); ok && o.Limit > 0 && int64(len(nodes.Items)) > o.Limit {
		// The cache's index is a set: any order.
		rand.Shuffle(len(nodes.Items), func(i, j int) { nodes.Items[i], nodes.Items[j] = nodes.Items[j], nodes.Items[i] }) //nolint:gosec // an order, nothing secret
		nodes.Items = nodes.Items[:o.Limit]
	}
	return nil
}

// TestCacheFactsMatchEveryNode: NodesWithAddress and NodesUnderName, which find a Node by its
// key for its own name and leave that name out of the indexes, answer what a scan of every Node
// answers (the indexes before #13 held the name too), for Nodes whose names and addresses
// collide in every way: an address equal to another Node's name, names that read as IPs
// (010.0.0.1 is 10.0.0.1), upper case and trailing dots in addresses, IPv4-mapped IPv6, names
// under other names. With a limit of 2 (the policy's), the answer names some other Node than
// the requester whenever one exists.
func TestCacheFactsMatchEveryNode(t *testing.T) {
	names := []string{"a", "a.b", "a.b.c", "a.c", "b", "10.0.0.1", "010.0.0.1", "10.0.0.2", "node-a"}
	values := []string{"a", "A.", "a.b", "A.B.", "a.b.c", "b", "10.0.0.1", "010.0.0.1", "::ffff:10.0.0.1", "10.0.0.2", "node-a", "x.a", "fd00::1"}
	types := []corev1.NodeAddressType{corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS, corev1.NodeInternalIP, corev1.NodeExternalIP}
	keys := []string{"a", "a.b", "a.b.c", "a.c", "b", "10.0.0.1", "010.0.0.1", "10.0.0.2", "node-a", "x.a", "fd00::1", "x"}
	rng := rand.New(rand.NewPCG(13, 4)) //nolint:gosec // a fixed seed, so that a failure repeats: nothing secret
	for round := range 60 {
		var objs []client.Object
		var nodes []*corev1.Node
		for _, name := range names {
			if rng.IntN(3) == 0 {
				continue
			}
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
			for range rng.IntN(4) {
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: types[rng.IntN(len(types))], Address: values[rng.IntN(len(values))]})
			}
			nodes, objs = append(nodes, n), append(objs, n)
		}
		facts := NewCacheFacts(limitingReader{newCache(objs...)}, nil, nil)
		desc := fmt.Sprintf("round %d, nodes %v", round, describe(nodes))
		for _, key := range keys {
			var withAddress, underName []string
			for _, n := range nodes {
				if slices.Contains(policy.AddressKeys(n.Status.Addresses), key) {
					withAddress = append(withAddress, n.Name)
				}
				if slices.Contains(policy.NamePrefixes(n.Name), key) {
					underName = append(underName, n.Name)
				}
			}
			slices.Sort(withAddress)
			slices.Sort(underName)
			got, err := facts.NodesWithAddress(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(got); !slices.Equal(got, withAddress) {
				t.Fatalf("%s: NodesWithAddress(%q) = %v, want %v", desc, key, got, withAddress)
			}
			got, err = facts.NodesUnderName(t.Context(), key, 0)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(got); !slices.Equal(got, underName) {
				t.Fatalf("%s: NodesUnderName(%q, 0) = %v, want %v", desc, key, got, underName)
			}
			for _, requester := range names {
				if requester == key {
					continue // otherNodeNamed does not ask for its own name
				}
				got, err = facts.NodesUnderName(t.Context(), key, 2)
				if err != nil {
					t.Fatal(err)
				}
				other := slices.ContainsFunc(underName, func(n string) bool { return n != requester })
				if len(got) > 2 || len(got) != len(slices.Compact(slices.Sorted(slices.Values(got)))) ||
					other != slices.ContainsFunc(got, func(n string) bool { return n != requester }) {
					t.Fatalf("%s: NodesUnderName(%q, 2) = %v for requester %q, want two at most of %v, another if any", desc, key, got, requester, underName)
				}
			}
		}
	}
}

func describe(nodes []*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, fmt.Sprintf("%s%v", n.Name, n.Status.Addresses))
	}
	return out
}
