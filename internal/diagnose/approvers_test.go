package diagnose

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/severity"
)

// csrEvent is an Event on CSR csr as csrguard's recorder writes it, seen ago before now.
func csrEvent(name, csr, reporter, reason string, ago time.Duration) corev1.Event {
	return corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: name},
		InvolvedObject:      corev1.ObjectReference{Kind: "CertificateSigningRequest", Name: csr},
		Reason:              reason,
		ReportingController: reporter,
		EventTime:           metav1.NewMicroTime(now.Add(-ago)),
	}
}

func TestDecisionApprover(t *testing.T) {
	const noLease = "; no Lease: it runs without leader election (out of cluster with --kubeconfig?)"
	approved := func(name, reason string, ago time.Duration) certificatesv1.CertificateSigningRequest {
		return withCondition(newCSR(t, name, "node-a", "10.0.0.1", time.Hour), certificatesv1.CertificateApproved, reason, "csrguard: all checks passed", ago)
	}
	repeated := csrEvent("ev-repeated", "csr-r", "csrguard", servingcsr.EventDenied, time.Hour)
	repeated.Series = &corev1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(now.Add(-3 * time.Minute))}
	tests := []struct {
		name   string
		csrs   []certificatesv1.CertificateSigningRequest
		events []corev1.Event
		want   *Approver
	}{
		{name: "nothing"},
		{name: "approved_recently", csrs: []certificatesv1.CertificateSigningRequest{approved("csr-a", servingcsr.ApprovedReason, 2*time.Minute)},
			want: &Approver{Name: "csr-a", Kind: servingcsr.ApproverCSRGuard, Where: "CertificateSigningRequest csr-a", Ready: true, Detail: "approved CSR csr-a 2m ago" + noLease}},
		{name: "approved_before_the_window", csrs: []certificatesv1.CertificateSigningRequest{approved("csr-a", servingcsr.ApprovedReason, 20*time.Minute)}},
		{name: "approved_by_another_approver", csrs: []certificatesv1.CertificateSigningRequest{approved("csr-a", "AutoApproved", time.Minute)}},
		{name: "dry_run", events: []corev1.Event{csrEvent("ev-1", "csr-a", "csrguard", servingcsr.EventWouldApprove, time.Minute)},
			want: &Approver{Name: "ev-1", Namespace: "default", Kind: servingcsr.ApproverCSRGuard, Where: "Event default/ev-1", Ready: true, Mode: "dry-run",
				Detail: "would have approved CSR csr-a 1m ago" + noLease + ", --mode=dry-run"}},
		// Switched from dry-run to enforcing: the newest decision tells.
		{name: "newest_decision_wins",
			csrs:   []certificatesv1.CertificateSigningRequest{approved("csr-b", servingcsr.ApprovedReason, time.Minute)},
			events: []corev1.Event{csrEvent("ev-1", "csr-a", "csrguard", servingcsr.EventWouldApprove, 10*time.Minute)},
			want:   &Approver{Name: "csr-b", Kind: servingcsr.ApproverCSRGuard, Where: "CertificateSigningRequest csr-b", Ready: true, Detail: "approved CSR csr-b 1m ago" + noLease}},
		{name: "denied_event", events: []corev1.Event{csrEvent("ev-1", "csr-evil", "csrguard", servingcsr.EventDenied, 30*time.Second)},
			want: &Approver{Name: "ev-1", Namespace: "default", Kind: servingcsr.ApproverCSRGuard, Where: "Event default/ev-1", Ready: true, Detail: "denied CSR csr-evil 30s ago" + noLease}},
		{name: "repeated_event_seen_lately", events: []corev1.Event{repeated},
			want: &Approver{Name: "ev-repeated", Namespace: "default", Kind: servingcsr.ApproverCSRGuard, Where: "Event default/ev-repeated", Ready: true, Detail: "denied CSR csr-r 3m ago" + noLease}},
		// Every mode holds, and dry-run and no-deny both say WouldDeny: they
		// do not tell whether csrguard approves.
		{name: "held_and_would_deny_only", events: []corev1.Event{
			csrEvent("ev-1", "csr-a", "csrguard", servingcsr.EventHeld, time.Minute),
			csrEvent("ev-2", "csr-b", "csrguard", servingcsr.EventWouldDeny, time.Minute),
		}},
		{name: "event_of_another_controller", events: []corev1.Event{csrEvent("ev-1", "csr-a", "other-approver", servingcsr.EventDenied, time.Minute)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decisionApprover(tc.csrs, tc.events, now)
			if tc.want == nil {
				if ok {
					t.Errorf("decisionApprover() = %+v, want none", got)
				}
				return
			}
			if diff := cmp.Diff(got, *tc.want); diff != "" || !ok {
				t.Errorf("decisionApprover() ok = %v (-got +want):\n%s", ok, diff)
			}
		})
	}
}

// TestFetchFindsCSRGuardByDecisions: a csrguard without leader election has no
// Lease; its recent approval makes preflight count it as the approver.
func TestFetchFindsCSRGuardByDecisions(t *testing.T) {
	node := newNode("node-a", "10.0.0.1", ubuntuOS, false)
	csr := withCondition(newCSR(t, "csr-a", "node-a", "10.0.0.1", 5*time.Minute), certificatesv1.CertificateApproved, servingcsr.ApprovedReason, "csrguard: all checks passed", 4*time.Minute)
	fetch := func(t *testing.T, cs *fake.Clientset) Snapshot {
		t.Helper()
		s, err := Fetch(context.Background(), cs, nil, Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("no_lease", func(t *testing.T) {
		s := fetch(t, fake.NewClientset(&node, &csr))
		want := []Approver{{Name: "csr-a", Kind: servingcsr.ApproverCSRGuard, Where: "CertificateSigningRequest csr-a", Ready: true,
			Detail: "approved CSR csr-a 4m ago; no Lease: it runs without leader election (out of cluster with --kubeconfig?)"}}
		if diff := cmp.Diff(s.Approvers, want); diff != "" {
			t.Errorf("approvers (-got +want):\n%s", diff)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Preflight(context.Background(), s, s.Policy, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantCheck := PreflightCheck{Name: "approver", OK: true, Detail: "CertificateSigningRequest csr-a (csrguard) is running and approving: " + want[0].Detail}
		if diff := cmp.Diff(r.Checks[0], wantCheck); diff != "" {
			t.Errorf("approver check (-got +want):\n%s", diff)
		}
	})

	t.Run("events_forbidden", func(t *testing.T) {
		cs := fake.NewClientset(&node)
		cs.PrependReactor("list", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", errors.New("rbac"))
		})
		s := fetch(t, cs)
		if diff := cmp.Diff(s.Notes, []string{"cannot list Events to find csrguard's recent decisions: forbidden"}); diff != "" || len(s.Approvers) != 0 {
			t.Errorf("approvers %v, notes (-got +want):\n%s", s.Approvers, diff)
		}
	})

	// With a live Lease the decisions add nothing, and Events are not read.
	t.Run("live_lease", func(t *testing.T) {
		cs := fake.NewClientset(&node, &csr, lease("csrguard", "csrguard-7d9f_1", 5*time.Second))
		s := fetch(t, cs)
		if len(s.Approvers) != 1 || s.Approvers[0].Where != "Lease csrguard/csrguard" {
			t.Errorf("approvers = %+v, want the Lease only", s.Approvers)
		}
		for _, a := range cs.Actions() {
			if a.GetResource().Resource == "events" {
				t.Errorf("Events read although the Lease shows csrguard runs: %v", a)
			}
		}
	})

	// Unless another approver approved a CSR: csrguard's Events say what it
	// would have denied of those; other controllers' Events are left out.
	t.Run("live_lease_beside_another_approver", func(t *testing.T) {
		other := withCondition(newCSR(t, "csr-b", "node-a", "10.0.0.1", 5*time.Minute), certificatesv1.CertificateApproved, "AutoApproved", "", 4*time.Minute)
		ours := csrEvent("ev-1", "csr-b", "csrguard", servingcsr.EventWouldDeny, time.Minute)
		theirs := csrEvent("ev-2", "csr-b", "other-approver", "Approved", time.Minute)
		s := fetch(t, fake.NewClientset(&node, &other, &ours, &theirs, lease("csrguard", "csrguard-7d9f_1", 5*time.Second)))
		if len(s.Approvers) != 1 || len(s.Events) != 1 || s.Events[0].Name != "ev-1" {
			t.Errorf("approvers = %+v, events = %+v; want the Lease and ev-1", s.Approvers, s.Events)
		}
	})
}

// TestApproverLogs: the log command names a Deployment only for a csrguard
// found by its Lease or Deployment, not one known by its decisions alone.
func TestApproverLogs(t *testing.T) {
	for _, tt := range []struct {
		a    Approver
		want string
	}{
		{Approver{Name: "csrguard", Namespace: "csrguard", Where: "Lease csrguard/csrguard"}, "kubectl -n csrguard logs deploy/csrguard"},
		{Approver{Name: "csrguard", Namespace: "ops", Where: "Deployment ops/csrguard"}, "kubectl -n ops logs deploy/csrguard"},
		{Approver{Name: "csr-1", Where: "CertificateSigningRequest csr-1"}, "the log of the csrguard process that runs outside the cluster, with --kubeconfig"},
		{Approver{Name: "csr-1.abc", Namespace: "default", Where: "Event default/csr-1.abc"}, "the log of the csrguard process that runs outside the cluster, with --kubeconfig"},
	} {
		if got := tt.a.logs(); got != tt.want {
			t.Errorf("%s: logs() = %q, want %q", tt.a.Where, got, tt.want)
		}
	}
}

// TestSeveralApprovers: csrguard beside an approver that checks no SANs is a
// warning that says which to stop and how; csrguard found twice (its
// Deployment and its Lease), or in dry-run beside another, is not.
func TestSeveralApprovers(t *testing.T) {
	alex := Approver{Name: "kubelet-serving-cert-approver", Namespace: "kubelet-serving-cert-approver", Kind: servingcsr.ApproverAlex1989hu,
		Where: "Deployment kubelet-serving-cert-approver/kubelet-serving-cert-approver", Ready: true, Detail: "1/1 replicas ready"}
	lease := Approver{Name: "csrguard", Namespace: "csrguard", Kind: servingcsr.ApproverCSRGuard, Where: "Lease csrguard/csrguard", Ready: true, Detail: "held by csrguard-0"}
	dryRun := csrguardApprover()
	dryRun.Mode = "dry-run"

	t.Run("csrguard_beside_another", func(t *testing.T) {
		s := healthy(t, ubuntuOS)
		s.Approvers = append(s.Approvers, alex)
		f := findByID(Diagnose(s), IDSeveralApprovers)
		want := &Finding{
			ID: IDSeveralApprovers, Severity: severity.Warning,
			Title: "2 approvers approve kubelet-serving CSRs: whichever writes first decides, so the most permissive policy is in force",
			Evidence: []string{
				"csrguard (Deployment csrguard/csrguard): 2/2 replicas ready, image ghcr.io/csrguard/csrguard:v0.1.0",
				"kubelet-serving-cert-approver (Deployment kubelet-serving-cert-approver/kubelet-serving-cert-approver): 1/1 replicas ready",
			},
			Fix: []string{"Stop kubelet-serving-cert-approver: kubectl -n kubelet-serving-cert-approver delete deployment kubelet-serving-cert-approver (and the rest of what its manifest installed)"},
		}
		if diff := cmp.Diff(f, want, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("finding (-got +want):\n%s", diff)
		}
	})
	for name, approvers := range map[string][]Approver{
		"csrguard_twice":          {csrguardApprover(), lease},
		"csrguard_dry_run_beside": {dryRun, alex},
		"one_other":               {alex},
	} {
		t.Run(name, func(t *testing.T) {
			s := healthy(t, ubuntuOS)
			s.Approvers = approvers
			if f := findByID(Diagnose(s), IDSeveralApprovers); f != nil {
				t.Errorf("unexpected finding: %+v", f)
			}
		})
	}
}

// TestApprovedWouldDeny: csrguard in dry-run beside another approver shows,
// by its WouldDeny Events, the CSRs that approver let through; a CSR
// csrguard approved, a pending one (pendingWouldDeny's) or another
// controller's Event is not that comparison.
func TestApprovedWouldDeny(t *testing.T) {
	alex := Approver{Name: "kubelet-serving-cert-approver", Namespace: "kube-system", Kind: servingcsr.ApproverAlex1989hu,
		Where: "Deployment kube-system/kubelet-serving-cert-approver", Ready: true, Detail: "1/1 replicas ready"}
	dryRun := csrguardApprover()
	dryRun.Mode = "dry-run"
	wouldDeny := func(name, csr, reporter, note string, ago time.Duration) corev1.Event {
		e := csrEvent(name, csr, reporter, servingcsr.EventWouldDeny, ago)
		e.Message = note
		return e
	}
	const (
		reserved = `ReservedName: reserved: DNS SAN "kubernetes.default.svc" is reserved`
		metadata = `ReservedAddress: reserved: IP SAN 169.254.169.254 is reserved`
	)
	build := func(t *testing.T) Snapshot {
		s := healthy(t, ubuntuOS)
		s.Approvers = []Approver{dryRun, alex}
		evil := withCondition(newCSR(t, "csr-evil", "node-b", "10.0.0.2", 3*time.Minute), certificatesv1.CertificateApproved, "AutoApproved", "Auto approving", 3*time.Minute)
		evil.Status.Certificate = []byte("certificate")
		s.CSRs = append(s.CSRs, evil,
			withCondition(newCSR(t, "csr-meta", "node-c", "10.0.0.3", 2*time.Minute), certificatesv1.CertificateApproved, "AutoApproved", "Auto approving", time.Minute))
		kube.SortCSRs(s.CSRs)
		s.Events = []corev1.Event{
			wouldDeny("ev-1", "csr-evil", "csrguard", "SANNotOnNode: an older verdict", 3*time.Minute),
			wouldDeny("ev-2", "csr-evil", "csrguard", reserved, 2*time.Minute),
			wouldDeny("ev-3", "csr-meta", "csrguard", metadata, time.Minute),
		}
		return s
	}

	t.Run("dry_run_beside_another", func(t *testing.T) {
		f := findByID(Diagnose(build(t)), IDApprovedWouldDeny)
		want := &Finding{
			ID: IDApprovedWouldDeny, Severity: severity.Warning, Nodes: []string{"node-b", "node-c"},
			Title: "Approved by kubelet-serving-cert-approver but csrguard would deny: 2 kubelet-serving CSRs",
			Evidence: []string{
				"reasons: ReservedAddress (1), ReservedName (1)",
				`csr-evil (node-b): approved 3m ago, reason "AutoApproved", certificate issued; csrguard would deny: ` + reserved,
				`csr-meta (node-c): approved 1m ago, reason "AutoApproved", not issued yet; csrguard would deny: ` + metadata,
			},
			Fix: []string{
				"See every check: csrguard explain csr-evil",
				"Investigate node-b node-c: a kubelet asks only for its own Node's addresses, so a reserved name or a foreign address means a misconfigured or compromised node, and kubelet-serving-cert-approver issued it a certificate.",
				"If one is a request you mean to allow, fix its cause (the check above names it) while csrguard is still in dry-run: once it enforces, it denies it.",
				"Then switch without a gap: set csrguard to --mode=enforce first, then remove kubelet-serving-cert-approver (README: Migrating from kubelet-serving-cert-approver / kubelet-csr-approver).",
			},
		}
		if diff := cmp.Diff(f, want, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("finding (-got +want):\n%s", diff)
		}
	})
	t.Run("approver_already_gone", func(t *testing.T) {
		s := build(t)
		s.Approvers = []Approver{csrguardApprover()}
		if f := findByID(Diagnose(s), IDApprovedWouldDeny); f == nil || f.Title != "Approved by another approver but csrguard would deny: 2 kubelet-serving CSRs" {
			t.Errorf("finding = %+v", f)
		}
	})
	for name, change := range map[string]func(s *Snapshot){
		"no_events": func(s *Snapshot) { s.Events = nil },
		"approved_by_csrguard": func(s *Snapshot) {
			for i := range s.CSRs {
				for j := range s.CSRs[i].Status.Conditions {
					s.CSRs[i].Status.Conditions[j].Reason = servingcsr.ApprovedReason
				}
			}
		},
		"pending": func(s *Snapshot) {
			for i := range s.CSRs {
				s.CSRs[i].Status = certificatesv1.CertificateSigningRequestStatus{}
			}
		},
		"another_controllers_events": func(s *Snapshot) {
			for i := range s.Events {
				s.Events[i].ReportingController = "other-approver"
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := build(t)
			change(&s)
			if f := findByID(Diagnose(s), IDApprovedWouldDeny); f != nil {
				t.Errorf("unexpected finding: %+v", f)
			}
		})
	}
}
