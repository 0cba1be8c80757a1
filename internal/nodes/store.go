// Package nodes keeps the cluster's Nodes in memory as the little csrguard reads of them — the
// name, creation time, addresses, control-plane labels and kubelet port — indexed by address key
// and by name prefix, for the policy's lookups, the address claims and the kubelet monitor.
//
// It replaces a controller-runtime informer because of memory: a typed cache keeps each Node as a
// corev1.Node, 896 bytes before any field, and each index entry as a set of its own, ~330 bytes.
// At 10,000 Nodes that was most of csrguard's heap (issue #13). A Node here is a few hundred
// bytes (BenchmarkStoreBytes). Store is fed by a client-go Reflector (Start), the same list and
// watch an informer runs, and tells its subscribers of every change in order (Subscribe).
//
// Until the first list is in, every lookup returns ErrNotSynced: an empty store never says that
// no other Node reports an address.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/csrguard/csrguard/internal/policy"
)

// Node is what Store keeps of a Node. It is shared by every reader and never changed: a
// change to the Node makes a new one.
type Node struct {
	policy.Node
	// KubeletPort is status.daemonEndpoints.kubeletEndpoint.port, 0 when unset.
	KubeletPort int32
}

// Keys returns policy.AddressKeys of the Node's addresses: where the Store indexes it. They are
// worked out at each call rather than kept: a Node's are read when it changes.
func (n *Node) Keys() []string { return policy.AddressKeys(n.Addresses) }

// ErrNotSynced is returned by the lookups of a Store that has not yet listed the Nodes.
var ErrNotSynced = errors.New("nodes not listed yet")

// Store is the cluster's Nodes, as Node. It implements toolscache.ReflectorStore; it is safe
// for concurrent use.
type Store struct {
	labelKeys []string
	lw        toolscache.ListerWatcher

	// write serialises the writers (the reflector) and Subscribe, so that subscribers see every
	// change once, in order; mu guards the maps for readers.
	write     sync.Mutex
	mu        sync.RWMutex
	byName    map[string]*Node
	byAddress names // address key -> the Nodes reporting it
	byPrefix  names // name prefix but the whole name (policy.NamePrefixes) -> the Nodes under it
	synced    bool
	syncedCh  chan struct{}
	subs      map[int]func(old, cur *Node)
	nextSub   int
}

// NewStore returns an empty Store of the Nodes lw lists and watches (nil: fed by the caller),
// keeping of their labels only labelKeys (policy.Config.ControlPlaneLabelKeys).
func NewStore(lw toolscache.ListerWatcher, labelKeys []string) *Store {
	return &Store{
		labelKeys: slices.Clone(labelKeys), lw: lw,
		byName: map[string]*Node{}, byAddress: newNames(), byPrefix: newNames(),
		syncedCh: make(chan struct{}), subs: map[int]func(old, cur *Node){},
	}
}

// Start runs a Reflector into the store until ctx ends. It is a manager.Runnable that every
// replica runs (NeedLeaderElection).
func (s *Store) Start(ctx context.Context) error {
	if s.lw == nil {
		return errors.New("nodes: Start of a Store without a ListerWatcher")
	}
	r := toolscache.NewReflectorWithOptions(s.lw, &corev1.Node{}, s, toolscache.ReflectorOptions{Name: "csrguard-nodes"})
	r.RunWithContext(ctx)
	return nil
}

// Of returns a Store that has listed nodes and is fed nothing more: for tests, and for code
// that has the Nodes at hand.
func Of(labelKeys []string, nodes ...*corev1.Node) *Store {
	s := NewStore(nil, labelKeys)
	list := make([]any, len(nodes))
	for i, n := range nodes {
		list[i] = n
	}
	_ = s.Replace(list, "") // only a Node, never an error
	return s
}

// ListWatch lists and watches every Node with cs, streaming the first list where cs and the API
// server can (client-go's WatchListClient), as an informer does.
func ListWatch(cs kubernetes.Interface) toolscache.ListerWatcher {
	nodes := cs.CoreV1().Nodes()
	return toolscache.ToListWatcherWithWatchListSemantics(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return nodes.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return nodes.Watch(ctx, o)
		},
	}, cs)
}

// NeedLeaderElection is false: every replica decides with the same Nodes.
func (s *Store) NeedLeaderElection() bool { return false }

// HasSynced reports whether the first list is in.
func (s *Store) HasSynced() bool {
	select {
	case <-s.syncedCh:
		return true
	default:
		return false
	}
}

// WaitForSync waits for the first list, or returns ctx's error.
func (s *Store) WaitForSync(ctx context.Context) error {
	select {
	case <-s.syncedCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the Node list: %w", ctx.Err())
	}
}

// Get returns the Node named name, or nil.
func (s *Store) Get(name string) (*Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.synced {
		return nil, ErrNotSynced
	}
	return s.byName[name], nil
}

// WithAddress returns the names of the Nodes reporting an address with key (policy.AddressKey).
func (s *Store) WithAddress(key string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.synced {
		return nil, ErrNotSynced
	}
	return s.byAddress.get(key, 0, []string{}), nil
}

// UnderName returns the names of up to limit Nodes (all when limit <= 0) named name or name
// followed by more labels: the Node named name first, then those policy.NamePrefixes puts under it.
func (s *Store) UnderName(name string, limit int) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.synced {
		return nil, ErrNotSynced
	}
	out := []string{}
	if _, ok := s.byName[name]; ok {
		out = append(out, name)
	}
	return s.byPrefix.get(name, limit, out), nil
}

// List returns every Node, in no order.
func (s *Store) List() ([]*Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.synced {
		return nil, ErrNotSynced
	}
	return s.listLocked(), nil
}

func (s *Store) listLocked() []*Node {
	out := make([]*Node, 0, len(s.byName))
	for _, n := range s.byName {
		out = append(out, n)
	}
	return out
}

// Subscribe calls changed for every change to the Nodes from now on, in order, from the
// reflector's goroutine: old is nil for a new Node, cur nil for a deleted one; a change is a
// change of what Node keeps, so the kubelet's status heartbeats call nothing. If init is not
// nil it is first called with every Node, once the store has synced (Subscribe waits for that,
// or returns ctx's error), so that init and changed together see every state exactly once.
// Neither may call Subscribe or block for long: the store's updates wait for them. The returned
// function ends the subscription.
func (s *Store) Subscribe(ctx context.Context, init func(all []*Node), changed func(old, cur *Node)) (func(), error) {
	if init != nil {
		if err := s.WaitForSync(ctx); err != nil {
			return nil, err
		}
	}
	s.write.Lock()
	defer s.write.Unlock()
	if init != nil {
		s.mu.RLock()
		all := s.listLocked()
		s.mu.RUnlock()
		init(all)
	}
	id := s.nextSub
	s.nextSub++
	s.subs[id] = changed
	return func() {
		s.write.Lock()
		defer s.write.Unlock()
		delete(s.subs, id)
	}, nil
}

// change is one Node's before and after; nil for absent.
type change struct{ old, cur *Node }

// apply makes the changes under the locks and then tells the subscribers. s.write is held.
func (s *Store) apply(changes []change) {
	s.mu.Lock()
	for _, c := range changes {
		if c.old != nil {
			s.unindex(c.old)
		}
		if c.cur != nil {
			s.index(c.cur)
		}
	}
	s.mu.Unlock()
	for _, c := range changes {
		for _, f := range s.subs {
			f(c.old, c.cur)
		}
	}
}

func (s *Store) index(n *Node) {
	s.byName[n.Name] = n
	for _, k := range n.Keys() {
		s.byAddress.add(k, n.Name)
	}
	for _, p := range prefixes(n.Name) {
		s.byPrefix.add(p, n.Name)
	}
}

func (s *Store) unindex(n *Node) {
	delete(s.byName, n.Name)
	for _, k := range n.Keys() {
		s.byAddress.remove(k, n.Name)
	}
	for _, p := range prefixes(n.Name) {
		s.byPrefix.remove(p, n.Name)
	}
}

// names maps keys to the names of the Nodes under them, for keys that one Node almost always
// holds alone (an address, a name prefix): the first name is a map value of its own, the
// others, if any, a list in a second map. No array per key: at 10,000 Nodes a slice per key
// was a fifth of the Store.
type names struct {
	first map[string]string
	more  map[string][]string
}

func newNames() names { return names{first: map[string]string{}, more: map[string][]string{}} }

func (m names) add(key, name string) {
	if _, ok := m.first[key]; !ok {
		m.first[key] = name
		return
	}
	m.more[key] = append(m.more[key], name)
}

func (m names) remove(key, name string) {
	first, ok := m.first[key]
	switch {
	case !ok:
	case first != name:
		if more := without(m.more[key], name); len(more) > 0 {
			m.more[key] = more
		} else {
			delete(m.more, key)
		}
	case len(m.more[key]) > 0:
		// The first of the others takes its place.
		more := m.more[key]
		m.first[key] = more[0]
		if len(more) == 1 {
			delete(m.more, key)
		} else {
			m.more[key] = slices.Clone(more[1:])
		}
	default:
		delete(m.first, key)
	}
}

// get appends to out up to limit names (all when limit <= 0) under key, so many that out
// holds at most limit.
func (m names) get(key string, limit int, out []string) []string {
	first, ok := m.first[key]
	if !ok || limit > 0 && len(out) >= limit {
		return out
	}
	out = append(out, first)
	// Up to the limit only: the policy asks for two Nodes under a name prefix that thousands
	// may share, and must not pay for all of them.
	for _, n := range m.more[key] {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, n)
	}
	return out
}

// prefixes are the keys of byPrefix for a Node name: policy.NamePrefixes but the whole name,
// under which byName finds it; most names have no dot, and so no prefix.
func prefixes(name string) []string {
	p := policy.NamePrefixes(name)
	return p[:len(p)-1]
}

// without returns names without name, in a new array when it changes: readers hold no
// reference to it (WithAddress and UnderName copy), but a shared key's list stays small.
func without(names []string, name string) []string {
	i := slices.Index(names, name)
	if i < 0 {
		return names
	}
	if len(names) == 1 {
		return nil
	}
	return slices.Delete(slices.Clone(names), i, i+1)
}

// Add implements toolscache.ReflectorStore.
func (s *Store) Add(obj any) error { return s.Update(obj) }

// Update implements toolscache.ReflectorStore.
func (s *Store) Update(obj any) error {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return fmt.Errorf("nodes: stored a %T, not a Node", obj)
	}
	s.write.Lock()
	defer s.write.Unlock()
	s.mu.RLock()
	old := s.byName[n.Name]
	s.mu.RUnlock()
	cur := s.kept(n, old)
	if cur == old {
		return nil
	}
	s.apply([]change{{old, cur}})
	return nil
}

// Delete implements toolscache.ReflectorStore.
func (s *Store) Delete(obj any) error {
	name, err := nameOf(obj)
	if err != nil {
		return err
	}
	s.write.Lock()
	defer s.write.Unlock()
	s.mu.RLock()
	old := s.byName[name]
	s.mu.RUnlock()
	if old != nil {
		s.apply([]change{{old, nil}})
	}
	return nil
}

func nameOf(obj any) (string, error) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if d.Obj == nil {
			return d.Key, nil // a Node's key is its name
		}
		obj = d.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return "", fmt.Errorf("nodes: deleted a %T, not a Node", obj)
	}
	return n.Name, nil
}

// Replace implements toolscache.ReflectorStore: the Nodes are list; those not in it are gone.
// The first Replace syncs the store.
func (s *Store) Replace(list []any, _ string) error {
	s.write.Lock()
	defer s.write.Unlock()
	s.mu.RLock()
	current := maps.Clone(s.byName)
	s.mu.RUnlock()
	changes := make([]change, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, obj := range list {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return fmt.Errorf("nodes: listed a %T, not a Node", obj)
		}
		seen[n.Name] = true
		// current follows the changes, so that a name listed twice (never from the API server)
		// is an update of its first copy, and the indexes stay right.
		old := current[n.Name]
		if cur := s.kept(n, old); cur != old {
			changes = append(changes, change{old, cur})
			current[n.Name] = cur
		}
	}
	for name, old := range current {
		if !seen[name] {
			changes = append(changes, change{old, nil})
		}
	}
	s.apply(changes)
	if !s.synced {
		s.mu.Lock()
		s.synced = true
		s.mu.Unlock()
		close(s.syncedCh)
	}
	return nil
}

// Resync implements toolscache.ReflectorStore: nothing to do, there is no queue.
func (s *Store) Resync() error { return nil }

// Transformer implements toolscache.TransformingStore. The reflector's watch-list collects the
// first list in a store of its own before handing it to Replace: Trim keeps that store to the
// few fields Node keeps, not whole Nodes (20 kB each of a real kubelet's), until Replace.
func (s *Store) Transformer() toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			s.Trim(n)
		}
		return obj, nil
	}
}

// Trim drops from n, in place, everything FromAPI does not read.
func (s *Store) Trim(n *corev1.Node) {
	n.Labels = labels(n.Labels, s.labelKeys)
	n.Annotations, n.ManagedFields, n.OwnerReferences, n.Finalizers = nil, nil, nil, nil
	n.Spec = corev1.NodeSpec{}
	n.Status = corev1.NodeStatus{Addresses: n.Status.Addresses, DaemonEndpoints: n.Status.DaemonEndpoints}
}

// labels returns the labels of labelKeys in l: l itself when that is all it has.
func labels(l map[string]string, labelKeys []string) map[string]string {
	var out map[string]string
	for _, k := range labelKeys {
		if v, ok := l[k]; ok {
			if out == nil {
				out = make(map[string]string, len(labelKeys))
			}
			out[k] = v
		}
	}
	if len(out) == len(l) {
		return l
	}
	return out
}

// FromAPI returns what a Store keeps of n, of whose labels it keeps only labelKeys.
func FromAPI(n *corev1.Node, labelKeys []string) *Node {
	addrs := make([]corev1.NodeAddress, len(n.Status.Addresses))
	for i, a := range n.Status.Addresses {
		addrs[i] = corev1.NodeAddress{Type: addressType(a.Type), Address: a.Address}
		if a.Address == n.Name {
			addrs[i].Address = n.Name // a Hostname address: the name, held once
		}
	}
	return &Node{
		Node:        policy.Node{Name: n.Name, Addresses: addrs, Created: n.CreationTimestamp.Time, Labels: labels(n.Labels, labelKeys)},
		KubeletPort: n.Status.DaemonEndpoints.KubeletEndpoint.Port,
	}
}

// equal reports whether n and o keep the same.
func (n *Node) equal(o *Node) bool {
	return n.Name == o.Name && n.Created.Equal(o.Created) && n.KubeletPort == o.KubeletPort &&
		slices.Equal(n.Addresses, o.Addresses) && maps.Equal(n.Labels, o.Labels)
}

// kept returns FromAPI of n, or old when that keeps the same.
func (s *Store) kept(n *corev1.Node, old *Node) *Node {
	cur := FromAPI(n, s.labelKeys)
	if old != nil && old.equal(cur) {
		return old
	}
	return cur
}

// addressType returns t as one of the constants where it is one, so that the decoder's copy of
// the string in every Node is not kept.
func addressType(t corev1.NodeAddressType) corev1.NodeAddressType {
	for _, c := range []corev1.NodeAddressType{corev1.NodeHostName, corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeInternalDNS, corev1.NodeExternalDNS} {
		if t == c {
			return c
		}
	}
	return t
}
