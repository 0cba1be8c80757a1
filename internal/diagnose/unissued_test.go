package diagnose

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/monitor"
)

// TestApprovedNotIssuedAgreesWithMetric checks that the doctor's
// approved-not-issued finding and the csrguard_approved_unissued_csrs metric
// the controller exports count the same CSRs, built from one set: both read
// the approval time with servingcsr.ApprovedAt and wait servingcsr.IssueGrace.
func TestApprovedNotIssuedAgreesWithMetric(t *testing.T) {
	const never = -1 // a condition time left unset
	// approved is a CSR created created ago, approved with the given
	// condition times (ago, or never), and a certificate when issued.
	approved := func(name string, created, updated, transitioned time.Duration) certificatesv1.CertificateSigningRequest {
		csr := newCSR(t, name, "node-"+name, "10.0.0.10", created)
		cond := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}
		if updated != never {
			cond.LastUpdateTime = metav1.NewTime(now.Add(-updated))
		}
		if transitioned != never {
			cond.LastTransitionTime = metav1.NewTime(now.Add(-transitioned))
		}
		csr.Status.Conditions = append(csr.Status.Conditions, cond)
		return csr
	}
	withCert := func(csr certificatesv1.CertificateSigningRequest) certificatesv1.CertificateSigningRequest {
		csr.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----\n")
		return csr
	}
	withFailed := func(csr certificatesv1.CertificateSigningRequest) certificatesv1.CertificateSigningRequest {
		return withCondition(csr, certificatesv1.CertificateFailed, "SignerValidationFailure", "", time.Minute)
	}
	tests := []struct {
		csr    certificatesv1.CertificateSigningRequest
		counts bool
	}{
		{approved("updated-old", time.Hour, 10*time.Minute, 10*time.Minute), true},
		{approved("updated-recent", time.Hour, 30*time.Second, 30*time.Second), false},
		// The update time wins over the transition time.
		{approved("updated-recent-transitioned-old", time.Hour, 30*time.Second, 10*time.Minute), false},
		{approved("transitioned-old", time.Hour, never, 10*time.Minute), true},
		{approved("transitioned-recent", time.Hour, never, 30*time.Second), false},
		// Neither time: approved no earlier than created.
		{approved("untimed-old", time.Hour, never, never), true},
		{approved("untimed-recent", 30*time.Second, never, never), false},
		{withCert(approved("issued", time.Hour, 10*time.Minute, 10*time.Minute)), false},
		{withFailed(approved("failed", time.Hour, 10*time.Minute, 10*time.Minute)), false},
		{newCSR(t, "pending", "node-pending", "10.0.0.10", time.Hour), false},
		{withCondition(newCSR(t, "denied", "node-denied", "10.0.0.10", time.Hour), certificatesv1.CertificateDenied, "Denied", "", 10*time.Minute), false},
	}

	var all []certificatesv1.CertificateSigningRequest
	var want []string
	for _, tc := range tests {
		all = append(all, tc.csr)
		if tc.counts {
			want = append(want, tc.csr.Name)
		}
		t.Run(tc.csr.Name, func(t *testing.T) {
			one := []certificatesv1.CertificateSigningRequest{tc.csr}
			var wantOne []string
			if tc.counts {
				wantOne = []string{tc.csr.Name}
			}
			if diff := cmp.Diff(unissuedFinding(one), wantOne); diff != "" {
				t.Errorf("doctor's finding (-got +want):\n%s", diff)
			}
			if err := compareUnissuedMetric(t, one, len(wantOne)); err != nil {
				t.Error(err)
			}
		})
	}
	// All together: the same CSRs, and as many in the metric.
	kube.SortCSRs(all)
	slices.Sort(want)
	got := unissuedFinding(all)
	slices.Sort(got)
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("doctor's finding on every CSR (-got +want):\n%s", diff)
	}
	if err := compareUnissuedMetric(t, all, len(want)); err != nil {
		t.Error(err)
	}
}

// unissuedFinding returns the names of the CSRs the doctor reports approved
// but not issued among csrs.
func unissuedFinding(csrs []certificatesv1.CertificateSigningRequest) []string {
	f := findByID(Diagnose(Snapshot{Now: now, CSRs: csrs}), IDApprovedNotIssued)
	if f == nil {
		return nil
	}
	var names []string
	for _, line := range f.Evidence {
		name, _, _ := strings.Cut(line, " ")
		names = append(names, name)
	}
	return names
}

// compareUnissuedMetric compares csrguard_approved_unissued_csrs, as the
// controller's collector computes it over a cache holding csrs, with want.
func compareUnissuedMetric(t *testing.T, csrs []certificatesv1.CertificateSigningRequest, want int) error {
	t.Helper()
	var objs []client.Object
	for i := range csrs {
		objs = append(objs, &csrs[i])
	}
	c := monitor.NewCSRCollector(fake.NewClientBuilder().WithObjects(objs...).Build(), clocktesting.NewFakeClock(now))
	text := fmt.Sprintf(`
# HELP csrguard_approved_unissued_csrs Kubelet-serving CSRs approved more than a minute ago that the signer has not issued (signer down or not configured for kubelet-serving).
# TYPE csrguard_approved_unissued_csrs gauge
csrguard_approved_unissued_csrs %d
`, want)
	return testutil.CollectAndCompare(c, strings.NewReader(text), "csrguard_approved_unissued_csrs")
}
