package diagnose

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// decisionWindow is how recent a decision must be to count as a sign that
// csrguard runs now. Decisions are rare in a quiet cluster, so their absence
// proves nothing; a short window keeps one that stopped from counting long.
const decisionWindow = 15 * time.Minute

// eventReporter is the reporting controller of csrguard's Events: the name
// internal/controller gives its event recorder.
const eventReporter = "csrguard"

// detectDecidingCSRGuard adds to s.Approvers a csrguard known by its recent
// decisions when neither a Lease nor a Deployment showed a running one: a
// csrguard without leader election (the default out of cluster, with
// --kubeconfig) holds no Lease. It reads csrguard's Events on CSRs into
// s.Events, and also when another approver approved a CSR, for what a dry-run
// csrguard would have denied of those (approvedWouldDeny); a failed read is a
// note, as the Events are evidence, not a requirement.
func (s *Snapshot) detectDecidingCSRGuard(ctx context.Context, cs kubernetes.Interface) {
	running := slices.ContainsFunc(s.Approvers, func(a Approver) bool { return a.Kind == servingcsr.ApproverCSRGuard && a.Ready })
	if running && !slices.ContainsFunc(s.CSRs, func(c certificatesv1.CertificateSigningRequest) bool { return servingcsr.ApprovedByOther(&c) }) {
		return
	}
	// Events about cluster-scoped objects such as CSRs are in namespace default.
	list, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=CertificateSigningRequest"})
	if err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("cannot list Events to find csrguard's recent decisions: %v", reason(err)))
	} else {
		for _, e := range list.Items {
			if e.ReportingController == eventReporter {
				s.Events = append(s.Events, e)
			}
		}
	}
	if running {
		return
	}
	if a, ok := decisionApprover(s.CSRs, s.Events, s.Now); ok {
		s.Approvers = append(s.Approvers, a)
	}
}

// decisionApprover recognises a running csrguard by its newest decision of
// the last decisionWindow before now that shows its mode: an Approved
// condition with servingcsr.ApprovedReason or a Denied Event (it approves), or a
// WouldApprove Event (dry-run). Held and WouldDeny Events are left out: every
// mode writes them, so they cannot tell whether csrguard approves.
func decisionApprover(csrs []certificatesv1.CertificateSigningRequest, events []corev1.Event, now time.Time) (Approver, bool) {
	var newest struct {
		at     time.Time
		a      Approver
		what   string
		dryRun bool
	}
	consider := func(at time.Time, a Approver, what string, dryRun bool) {
		if now.Sub(at) > decisionWindow || !at.After(newest.at) {
			return
		}
		newest.at, newest.a, newest.what, newest.dryRun = at, a, what, dryRun
	}
	for i := range csrs {
		csr := &csrs[i]
		for _, c := range csr.Status.Conditions {
			if c.Type == certificatesv1.CertificateApproved && c.Reason == servingcsr.ApprovedReason {
				consider(c.LastUpdateTime.Time, Approver{Name: csr.Name, Where: "CertificateSigningRequest " + csr.Name}, "approved CSR "+csr.Name, false)
			}
		}
	}
	for i := range events {
		e := &events[i]
		if e.InvolvedObject.Kind != "CertificateSigningRequest" || e.ReportingController != eventReporter {
			continue
		}
		a := Approver{Name: e.Name, Namespace: e.Namespace, Where: "Event " + e.Namespace + "/" + e.Name}
		switch e.Reason {
		case servingcsr.EventDenied:
			consider(eventTime(e), a, "denied CSR "+e.InvolvedObject.Name, false)
		case servingcsr.EventWouldApprove:
			consider(eventTime(e), a, "would have approved CSR "+e.InvolvedObject.Name, true)
		}
	}
	if newest.at.IsZero() {
		return Approver{}, false
	}
	a := newest.a
	a.Kind, a.Ready = servingcsr.ApproverCSRGuard, true
	a.Detail = fmt.Sprintf("%s %s ago; no Lease: it runs without leader election (out of cluster with --kubeconfig?)", newest.what, human.Duration(now.Sub(newest.at)))
	if newest.dryRun {
		a.Mode = "dry-run"
		a.Detail += ", --mode=dry-run"
	}
	return a, true
}

// eventTime is when e was last seen: events.k8s.io Events (csrguard's) set
// eventTime and, when repeated, series.lastObservedTime; older ones lastTimestamp.
func eventTime(e *corev1.Event) time.Time {
	t := e.EventTime.Time
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.LastTimestamp.After(t) {
		t = e.LastTimestamp.Time
	}
	return t
}

// logs says where to read a's log: its Deployment's, found by its Lease or
// Deployment; a csrguard known only by its decisions runs outside the
// cluster, where only whoever started it has the log.
func (a Approver) logs() string {
	if strings.HasPrefix(a.Where, "Deployment ") || strings.HasPrefix(a.Where, "Lease ") {
		return fmt.Sprintf("kubectl -n %s logs deploy/%s", a.Namespace, a.Name)
	}
	return "the log of the csrguard process that runs outside the cluster, with --kubeconfig"
}
