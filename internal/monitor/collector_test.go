package monitor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

var now = csrtest.Created.Add(time.Hour)

func pending(t *testing.T, name, node string, age time.Duration) *certificatesv1.CertificateSigningRequest {
	return csrtest.New(t, csrtest.Node(node), csrtest.Name(name), csrtest.CreatedAt(now.Add(-age)))
}

func withCondition(csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType, at time.Time) *certificatesv1.CertificateSigningRequest {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: typ, Status: corev1.ConditionTrue, LastUpdateTime: metav1.NewTime(at)})
	return csr
}

func TestSummarise(t *testing.T) {
	csrs := []certificatesv1.CertificateSigningRequest{
		*pending(t, "a-1", "node-a", 20*time.Minute),
		*pending(t, "a-2", "node-a", 5*time.Minute),
		*pending(t, "b-1", "node-b", time.Minute),
		*withCondition(pending(t, "c-1", "node-c", time.Hour), certificatesv1.CertificateApproved, now.Add(-10*time.Minute)),
		*withCondition(pending(t, "c-2", "node-c", time.Hour), certificatesv1.CertificateApproved, now.Add(-10*time.Second)),
		*withCondition(pending(t, "d-1", "node-d", time.Hour), certificatesv1.CertificateDenied, now),
		// node-e waited 3h; its newest CSR was approved: the older ones are abandoned.
		*pending(t, "e-1", "node-e", 3*time.Hour),
		*pending(t, "e-2", "node-e", 2*time.Hour),
		*withCondition(pending(t, "e-3", "node-e", time.Minute), certificatesv1.CertificateApproved, now),
		// node-f waits since its first CSR, 40 minutes ago, though it filed more since.
		*pending(t, "f-1", "node-f", 40*time.Minute),
		*pending(t, "f-2", "node-f", 25*time.Minute),
		*pending(t, "f-3", "node-f", 10*time.Minute),
		*csrtest.New(t, csrtest.Name("client"), csrtest.SignerName(certificatesv1.KubeAPIServerClientKubeletSignerName)),
	}
	got := Summarise(csrs, now)
	want := Summary{
		Pending:       6,
		OldestPending: 40 * time.Minute,
		PendingByNode: map[string]NodePending{
			"node-a": {Count: 2, Oldest: 20 * time.Minute},
			"node-b": {Count: 1, Oldest: time.Minute},
			"node-f": {Count: 3, Oldest: 40 * time.Minute},
		},
		ApprovedNotIssued: 1,
		Superseded:        2,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Summarise (-got +want):\n%s", diff)
	}
}

func TestCSRCollector(t *testing.T) {
	reader := fake.NewClientBuilder().WithObjects(pending(t, "a-1", "node-a", 90*time.Second)).Build()
	c := NewCSRCollector(reader, clocktesting.NewFakeClock(now))
	want := `
# HELP csrguard_node_pending_csr_oldest_age_seconds How long each node has been waiting: the age of its oldest pending kubelet-serving CSR not superseded by a newer approved or issued one; only waiting nodes are listed.
# TYPE csrguard_node_pending_csr_oldest_age_seconds gauge
csrguard_node_pending_csr_oldest_age_seconds{node="node-a"} 90
# HELP csrguard_pending_csrs Pending kubelet-serving CSRs (no Approved, Denied or Failed condition) that nodes still wait on: not superseded by a newer approved or issued CSR of their node.
# TYPE csrguard_pending_csrs gauge
csrguard_pending_csrs 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "csrguard_pending_csrs", "csrguard_node_pending_csr_oldest_age_seconds"); err != nil {
		t.Error(err)
	}
}

// failingReader is a cache whose List fails.
type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cache not synced")
}

// TestCSRCollectorCacheError: a cache that cannot be listed leaves the
// pending series out and says so, instead of failing the whole scrape.
func TestCSRCollectorCacheError(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCSRCollector(failingReader{}, clocktesting.NewFakeClock(now)))
	want := `
# HELP csrguard_csr_cache_up 1 when the CSR cache could be read at this scrape, else 0 (and the pending-CSR series are missing from the scrape).
# TYPE csrguard_csr_cache_up gauge
csrguard_csr_cache_up 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
