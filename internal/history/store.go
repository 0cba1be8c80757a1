package history

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/policy"
)

// The ConfigMaps a Store keeps, in its namespace. Claims are spread over ClaimShards objects by
// node name, so that each stays far below the API server's 1 MiB object limit: about 85 KiB
// each with 10,000 nodes of three addresses.
const (
	IdentityConfigMap = "csrguard-apiserver-identity"
	claimsConfigMap   = "csrguard-address-claims-%02d"
	ClaimShards       = 16
	identityDataKey   = "sightings"
)

// shardSet is a set of claim ConfigMaps, by shard number: bit i is shard i.
type shardSet uint32

// allShards is every claim ConfigMap.
const allShards shardSet = 1<<ClaimShards - 1

func (s shardSet) has(i int) bool { return s&(1<<i) != 0 }

// ClaimConfigMaps returns the names of the claim ConfigMaps, for RBAC and tests.
func ClaimConfigMaps() []string {
	names := make([]string, ClaimShards)
	for i := range names {
		names[i] = fmt.Sprintf(claimsConfigMap, i)
	}
	return names
}

// Store keeps Identity and Claims in ConfigMaps of one namespace. Reads go to the API server
// (reader should be uncached, so no ConfigMap informer is started); writes use optimistic
// concurrency. It is safe for concurrent use.
type Store struct {
	reader    client.Reader
	writer    client.Client
	namespace string

	mu sync.Mutex
	// saved holds, by claim ConfigMap name, the digest of the data last written or read: all a
	// save needs to tell what changed, where a copy would cost as much memory as the claims.
	saved   map[string]dataDigest
	backoff map[string]retryAfter // claim ConfigMap name -> when its failed write may be retried
}

// dataDigest identifies a ConfigMap's data: SHA-256, so that no content chosen by a Node's
// names and addresses can pass for another and have a changed shard go unwritten.
type dataDigest [sha256.Size]byte

// unknownDigest stands for a claim ConfigMap whose content is not known: no data has it, so
// the next save writes that ConfigMap.
var unknownDigest dataDigest

// digest returns the digest of data: its entries in key order, each length-prefixed.
func digest(data map[string]string) dataDigest {
	h := sha256.New()
	var buf []byte // one buffer for every entry: the data may be most of a MiB
	for _, k := range slices.Sorted(maps.Keys(data)) {
		buf = binary.BigEndian.AppendUint64(buf[:0], uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(data[k])))
		buf = append(buf, data[k]...)
		h.Write(buf)
	}
	return dataDigest(h.Sum(nil))
}

// retryAfter is the backoff of a claim ConfigMap whose last write failed.
type retryAfter struct {
	at    time.Time
	delay time.Duration
}

// NewStore returns a Store in namespace. writer may be nil for a read-only Store.
func NewStore(reader client.Reader, writer client.Client, namespace string) *Store {
	return &Store{reader: reader, writer: writer, namespace: namespace, saved: map[string]dataDigest{}, backoff: map[string]retryAfter{}}
}

// ForgetSaved makes the next SaveClaims write every claim ConfigMap: for when another writer
// may have written them since this Store last read or wrote them (this replica becomes the
// leader after another one led).
func (s *Store) ForgetSaved() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range ClaimConfigMaps() {
		s.saved[name] = unknownDigest
	}
}

// Namespace returns the namespace the Store keeps its ConfigMaps in.
func (s *Store) Namespace() string { return s.namespace }

// LoadIdentity reads the recorded Identity; an absent ConfigMap is an empty one.
func (s *Store) LoadIdentity(ctx context.Context) (Identity, error) {
	cm, err := s.get(ctx, IdentityConfigMap)
	if err != nil || cm == nil {
		return Identity{}, err
	}
	return decodeIdentity(cm.Data[identityDataKey])
}

// SaveIdentity merges id into the recorded Identity, writes the result and returns it.
// Concurrent writers (every replica discovers) lose nothing: merging is a union.
func (s *Store) SaveIdentity(ctx context.Context, id Identity) (Identity, error) {
	var merged Identity
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := s.get(ctx, IdentityConfigMap)
		if err != nil {
			return err
		}
		merged = Identity{}
		if cm != nil {
			if merged, err = decodeIdentity(cm.Data[identityDataKey]); err != nil {
				return err
			}
		}
		merged.Merge(id)
		return s.put(ctx, cm, IdentityConfigMap, map[string]string{identityDataKey: encodeIdentity(merged)})
	})
	return merged, err
}

// LoadClaims reads every recorded claim, by address key. It fails only when a ConfigMap
// cannot be read. What it cannot use, it leaves out and reports in problems: an entry that is
// not JSON, a key that is not an address key, a missing time or one Claims cannot hold
// (instantHolds); a key recorded for two Nodes is contested and left out too (neither owns
// it), so that no hand edit or smuggled entry can hand an address to a Node.
func (s *Store) LoadClaims(ctx context.Context) (claims map[string]policy.Claim, problems []string, err error) {
	claims = map[string]policy.Claim{}
	contested := map[string]bool{}
	for _, name := range ClaimConfigMaps() {
		cm, err := s.get(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		if cm == nil {
			continue
		}
		for _, node := range slices.Sorted(maps.Keys(cm.Data)) {
			var entries map[string]claimEntry
			if err := json.Unmarshal([]byte(cm.Data[node]), &entries); err != nil {
				problems = append(problems, fmt.Sprintf("configmap %s/%s key %q: not a JSON object of claims: %v", s.namespace, name, node, err))
				continue
			}
			for _, key := range slices.Sorted(maps.Keys(entries)) {
				e := entries[key]
				switch {
				case policy.AddressKey(key) != key:
					problems = append(problems, fmt.Sprintf("configmap %s/%s key %q: %q is not an address key", s.namespace, name, node, key))
					continue
				case e.Since.IsZero():
					problems = append(problems, fmt.Sprintf("configmap %s/%s key %q: claim on %q has no time", s.namespace, name, node, key))
					continue
				case !instantHolds(e.Since) || !e.Released.IsZero() && !instantHolds(e.Released):
					problems = append(problems, fmt.Sprintf("configmap %s/%s key %q: claim on %q has a time outside the years 1678 to 2262", s.namespace, name, node, key))
					continue
				}
				if prev, ok := claims[key]; ok && prev.Node != node || contested[key] {
					problems = append(problems, fmt.Sprintf("configmap %s/%s: %q is recorded for nodes %q and %q: neither owns it", s.namespace, name, key, claims[key].Node, node))
					contested[key] = true
					delete(claims, key)
					continue
				}
				claims[key] = policy.Claim{Node: node, Since: e.Since, Released: e.Released}
			}
		}
		s.mu.Lock()
		s.saved[name] = digest(cm.Data)
		s.mu.Unlock()
	}
	return claims, problems, nil
}

// claimEntry is one claim as recorded, under its owner's key.
type claimEntry struct {
	Since    time.Time `json:"since"`
	Released time.Time `json:"released,omitzero"`
}

// maxShardBytes keeps a claim ConfigMap well under the API server's 1 MiB object limit.
const maxShardBytes = 900 << 10

// SaveClaims writes claims at now, replacing what is recorded; it writes only the ConfigMaps
// whose content changed since they were last loaded or saved, and every one of those even when
// another fails. A ConfigMap whose write failed is retried no sooner than its backoff (a
// second, doubling to a minute) after the failure, so that one that cannot be written neither
// floods the API server nor delays the others. It reports pending while any change is not
// written yet; err joins the writes that failed in this call. Only the leader saves claims.
func (s *Store) SaveClaims(ctx context.Context, claims map[string]policy.Claim, now time.Time) (pending bool, err error) {
	left, err := s.saveShards(ctx, claims, allShards, now)
	return left != 0, err
}

// due returns the shards of want whose backoff, if any, has passed at now.
func (s *Store) due(want shardSet, now time.Time) shardSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out shardSet
	for i, name := range ClaimConfigMaps() {
		if want.has(i) && !now.Before(s.backoff[name].at) {
			out |= 1 << i
		}
	}
	return out
}

// saveShards is SaveClaims for the claim ConfigMaps of shards only, from claims that hold at
// least every claim kept in them (others are ignored); it returns the shards not written yet.
// The Keeper calls it with the shards whose claims changed, so that a change to one Node does
// not encode every Node's claims.
func (s *Store) saveShards(ctx context.Context, claims map[string]policy.Claim, shards shardSet, now time.Time) (pending shardSet, err error) {
	data := make([]map[string]string, ClaimShards)
	byNode := map[string]map[string]claimEntry{}
	first := map[string]time.Time{} // node -> its oldest claim
	for key, c := range claims {
		if !shards.has(shard(c.Node)) {
			continue
		}
		if byNode[c.Node] == nil {
			byNode[c.Node] = map[string]claimEntry{}
		}
		byNode[c.Node][key] = claimEntry{Since: c.Since.UTC(), Released: c.Released.UTC()}
		if f, ok := first[c.Node]; !ok || c.Since.Before(f) {
			first[c.Node] = c.Since
		}
	}
	for node, entries := range byNode {
		b, err := json.Marshal(entries) // map keys are sorted: the encoding is stable
		if err != nil {
			return shards, fmt.Errorf("encode claims of node %q: %w", node, err)
		}
		i := shard(node)
		if data[i] == nil {
			data[i] = map[string]string{}
		}
		data[i][node] = string(b)
	}
	var errs []error
	for i, name := range ClaimConfigMaps() {
		if !shards.has(i) {
			continue
		}
		if left := fitShard(data[i], first); len(left) > 0 {
			// Better the claims of the newest Nodes lost than all of the shard's.
			errs = append(errs, fmt.Errorf("configmap %s/%s: left out the claims of nodes %s, the newest, to stay under %d bytes", s.namespace, name, strings.Join(left, ", "), maxShardBytes))
		}
		d := digest(data[i])
		s.mu.Lock()
		prev, known := s.saved[name]
		back := s.backoff[name]
		s.mu.Unlock()
		if known && prev == d || !known && len(data[i]) == 0 {
			continue
		}
		if now.Before(back.at) {
			pending |= 1 << i
			continue
		}
		if err := s.writeShard(ctx, name, data[i]); err != nil {
			pending |= 1 << i
			errs = append(errs, err)
			back.delay = min(max(2*back.delay, time.Second), time.Minute)
			s.mu.Lock()
			s.backoff[name] = retryAfter{at: now.Add(back.delay), delay: back.delay}
			// A write that failed may still have been applied (a timeout after the commit):
			// the ConfigMap's content is unknown now, so the next save writes it whatever the
			// claims are, even if they came back to what was last written.
			s.saved[name] = unknownDigest
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		s.saved[name] = d
		delete(s.backoff, name)
		s.mu.Unlock()
	}
	return pending, errors.Join(errs...)
}

// fitShard removes from a shard's data the newest Nodes (by their oldest claim) until it holds
// at most maxShardBytes, and returns them. A Node's entry is bounded (MaxKeysPerNode claims of
// at most 253 bytes each, about 22 KiB), so only many Nodes hashed to one shard can fill it:
// Nodes registered to do so are newer than the Nodes they would push out, and lose their
// record first; size does not count, or an attacker could shape its Nodes to evict a victim.
func fitShard(data map[string]string, first map[string]time.Time) []string {
	size := 0
	for k, v := range data {
		size += len(k) + len(v)
	}
	if size <= maxShardBytes {
		return nil
	}
	nodes := slices.SortedFunc(maps.Keys(data), func(a, b string) int {
		return cmp.Or(first[b].Compare(first[a]), cmp.Compare(a, b))
	})
	var left []string
	for _, node := range nodes {
		if size <= maxShardBytes {
			break
		}
		size -= len(node) + len(data[node])
		delete(data, node)
		left = append(left, node)
	}
	return left
}

// writeShard replaces the data of one claim ConfigMap.
func (s *Store) writeShard(ctx context.Context, name string, data map[string]string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := s.get(ctx, name)
		switch {
		case err != nil:
			return err
		case cm == nil && len(data) == 0:
			return nil // nothing recorded, nothing to record
		}
		return s.put(ctx, cm, name, data)
	})
}

// get reads a ConfigMap; nil and no error when it does not exist.
func (s *Store) get(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read configmap %s/%s: %w", s.namespace, name, err)
	}
	return &cm, nil
}

// put creates the ConfigMap (cm nil) or updates cm, with data.
func (s *Store) put(ctx context.Context, cm *corev1.ConfigMap, name string, data map[string]string) error {
	if s.writer == nil {
		return fmt.Errorf("write configmap %s/%s: read-only store", s.namespace, name)
	}
	if cm == nil {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Namespace: s.namespace, Name: name,
			Labels: map[string]string{"app.kubernetes.io/name": "csrguard", "app.kubernetes.io/component": "history"},
		}}
		cm.Data = data
		if err := s.writer.Create(ctx, cm); err != nil {
			return fmt.Errorf("create configmap %s/%s: %w", s.namespace, name, err)
		}
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = data
	if err := s.writer.Update(ctx, cm); err != nil {
		return fmt.Errorf("update configmap %s/%s: %w", s.namespace, name, err)
	}
	return nil
}

func shard(node string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	return int(h.Sum32() % ClaimShards)
}

// An Identity is one line per key: "<address or name> <first seen> <last seen> <sources>".
func encodeIdentity(id Identity) string {
	var b strings.Builder
	for _, key := range slices.Sorted(maps.Keys(id)) {
		s := id[key]
		fmt.Fprintf(&b, "%s %s %s %s\n", key, s.FirstSeen.UTC().Format(time.RFC3339), s.LastSeen.UTC().Format(time.RFC3339), strings.Join(s.Sources, ","))
	}
	return b.String()
}

func decodeIdentity(text string) (Identity, error) {
	id := Identity{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 || identityKey(f[0]) == "" {
			return nil, fmt.Errorf("configmap %s line %d: want \"<address or name> <first seen> <last seen> <sources>\", got %q", IdentityConfigMap, n, sc.Text())
		}
		first, err1 := time.Parse(time.RFC3339, f[1])
		last, err2 := time.Parse(time.RFC3339, f[2])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("configmap %s line %d: bad time in %q", IdentityConfigMap, n, sc.Text())
		}
		id.Merge(Identity{identityKey(f[0]): {FirstSeen: first, LastSeen: last, Sources: strings.Split(f[3], ",")}})
	}
	return id, sc.Err()
}
