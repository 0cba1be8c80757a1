package approval

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// TestCSRIndexMatchesEveryCSR: with final CSRs reduced by trimCSR, denied or failed ones left
// out of csrNodeIndex and nodes sharing its buckets or not, supersession (servingcsr.SupersededBy), the revisits a decision or deletion
// triggers (servingcsr.Revisit) and pendingCSRsOf answer as they would over every CSR, whole: for
// nodes with CSRs in every state — approved by csrguard or by another approver, issued, approved
// then failed, denied (as superseded or not) — created in the same second or not, beside an
// impostor (system:node:<name> without the group system:nodes) and requesters that are no node.
func TestCSRIndexMatchesEveryCSR(t *testing.T) {
	base := csrtest.New(t)
	approved := func(reason string) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: reason}
	}
	states := []func(*certificatesv1.CertificateSigningRequest){
		func(*certificatesv1.CertificateSigningRequest) {}, // pending
		func(*certificatesv1.CertificateSigningRequest) {},
		func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = append(c.Status.Conditions, approved(servingcsr.ApprovedReason))
		},
		func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = append(c.Status.Conditions, approved("AutoApproved"))
		},
		func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = append(c.Status.Conditions, approved(servingcsr.ApprovedReason))
			c.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
		},
		func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = append(c.Status.Conditions, approved("AutoApproved"),
				certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue})
		},
		func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "SANNotOnNode"})
		},
		func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: servingcsr.SupersededReason})
		},
	}
	requesters := []struct{ username string }{
		{"system:node:node-a"}, {"system:node:node-a"}, {"system:node:node-b"}, {"system:node:node-b"},
		{"system:node:node-a"}, // an impostor when without system:nodes, below
		{"system:serviceaccount:kube-system:node-a"},
	}
	defer func(n uint64) { nodeBuckets = n }(nodeBuckets)
	rng := rand.New(rand.NewPCG(13, 4)) //nolint:gosec // a fixed seed, so that a failure repeats: nothing secret
	for round := range 80 {
		// Every node in a bucket of its own, or all in one: csrsOf filters what the bucket shares.
		nodeBuckets = []uint64{2048, 1}[round%2]
		var all []certificatesv1.CertificateSigningRequest
		var objs []client.Object
		for i := range 4 + rng.IntN(10) {
			c := base.DeepCopy()
			c.Name = fmt.Sprintf("csr-%02d", i)
			c.UID = types.UID("uid-" + c.Name)
			req := requesters[rng.IntN(len(requesters))]
			c.Spec.Username = req.username
			if rng.IntN(6) == 0 {
				c.Spec.Groups = []string{"system:authenticated"}
			}
			c.CreationTimestamp = metav1.NewTime(csrtest.Created.Add(time.Duration(rng.IntN(4)) * time.Second))
			states[rng.IntN(len(states))](c)
			all = append(all, *c.DeepCopy())
			cached, err := trimCSR(c)
			if err != nil {
				t.Fatal(err)
			}
			objs = append(objs, cached.(*certificatesv1.CertificateSigningRequest))
		}
		cache := newCache(objs...)
		r := &Reconciler{reader: cache, metrics: newFixture(t, enforce()).metrics}
		for i := range all {
			whole := &all[i]
			node, ok := servingcsr.NodeName(whole.Spec.Username)
			if !ok {
				continue
			}
			indexed, err := csrsOf(t.Context(), cache, node)
			if err != nil {
				t.Fatal(err)
			}
			var cached certificatesv1.CertificateSigningRequest
			if err := cache.Get(t.Context(), client.ObjectKeyFromObject(whole), &cached); err != nil {
				t.Fatal(err)
			}
			for _, c := range indexed {
				if n, _ := servingcsr.NodeName(c.Spec.Username); n != node {
					t.Fatalf("round %d: csrsOf(%s) has %s of %s", round, node, c.Name, c.Spec.Username)
				}
			}
			desc := fmt.Sprintf("round %d, %s (%s, %v)", round, whole.Name, whole.Spec.Username, servingcsr.StateOf(whole))
			gotS, gotOK := servingcsr.SupersededBy(&cached, indexed)
			wantS, wantOK := servingcsr.SupersededBy(whole, all)
			if gotS != wantS || gotOK != wantOK {
				t.Errorf("%s: SupersededBy = %+v, %v; want %+v, %v", desc, gotS, gotOK, wantS, wantOK)
			}
			got, want := servingcsr.Revisit(&cached, indexed), servingcsr.Revisit(whole, all)
			slices.Sort(got)
			slices.Sort(want)
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("%s: Revisit mismatch (-got +want):\n%s", desc, diff)
			}
			var pending []string
			for j := range all {
				if n, _ := servingcsr.NodeName(all[j].Spec.Username); n == node && !servingcsr.IsFinal(&all[j]) {
					pending = append(pending, all[j].Name)
				}
			}
			var requeued []string
			for _, req := range r.pendingCSRsOf(t.Context(), node) {
				requeued = append(requeued, req.Name)
			}
			slices.Sort(requeued)
			if diff := cmp.Diff(requeued, pending); diff != "" {
				t.Errorf("%s: pendingCSRsOf mismatch (-got +want):\n%s", desc, diff)
			}
		}
	}
}
