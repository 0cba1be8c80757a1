// Package approval is the controller that decides kubelet-serving CSRs.
//
// For each pending CSR of signer kubernetes.io/kubelet-serving it reads the
// request and the facts from caches, asks policy.Evaluate for a decision and
// applies it according to the Mode: an approval or a denial written with
// UpdateApproval, an Event, a log line and a metric. Held CSRs are retried:
// when their Node appears or changes its addresses, when the settle time or a
// rate limit runs out, and with backoff after errors. The package owns the
// controller-runtime wiring (watches, indexes, trimmed caches), the per-node
// rate limit and the global breaker; the decision itself is package policy's,
// and the discovery of the API server's identity package kube's.
package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// Mode says which decisions the controller writes.
type Mode string

// The modes.
const (
	// Enforce approves and denies.
	Enforce Mode = "enforce"
	// NoDeny approves, and leaves CSRs it would deny pending for a human.
	NoDeny Mode = "no-deny"
	// DryRun decides, logs, records Events and metrics, and writes no decision.
	DryRun Mode = "dry-run"
)

// Config configures the Reconciler.
type Config struct {
	// Policy is the decision policy.
	Policy policy.Config
	// Mode says which decisions are written.
	Mode Mode
	// NodeLimit limits approvals per node; zero Max disables it.
	NodeLimit Limit
	// Breaker holds every approval once too many happened cluster-wide in a
	// window; zero Max disables it.
	Breaker Limit
	// HoldRetry is how often a CSR held for a reason no watch resolves is
	// re-evaluated; default 30s.
	HoldRetry time.Duration
}

// Limit is a count of approvals allowed in a sliding window.
type Limit struct {
	Max    int
	Window time.Duration
}

// Writer writes a CSR's approval subresource. The typed clientset's
// CertificateSigningRequests() satisfies it.
type Writer interface {
	UpdateApproval(ctx context.Context, name string, csr *certificatesv1.CertificateSigningRequest, opts metav1.UpdateOptions) (*certificatesv1.CertificateSigningRequest, error)
}

// Reconciler decides one CSR per call to Reconcile.
type Reconciler struct {
	reader   client.Reader
	writer   Writer
	recorder events.EventRecorder
	metrics  *metrics.Metrics
	clock    clock.PassiveClock
	facts    policy.Facts
	cfg      Config

	nodeLimit *window  // keyed by node name
	breaker   *window  // one key
	holds     sync.Map // CSR name -> report: what was last reported for it (see firstReport)
	// superseded holds the pending CSRs found finally superseded while the
	// mode kept them pending, by name (a supersededCSR; see supersede).
	superseded sync.Map
}

// NewReconciler returns a Reconciler. reader should be a cache; writer the
// clientset's CSR interface; recorder may be nil in tests that do not look at
// Events.
func NewReconciler(reader client.Reader, writer Writer, recorder events.EventRecorder, m *metrics.Metrics, clk clock.PassiveClock, facts policy.Facts, cfg Config) *Reconciler {
	if cfg.HoldRetry <= 0 {
		cfg.HoldRetry = 30 * time.Second
	}
	if cfg.Mode == "" {
		cfg.Mode = Enforce
	}
	if m != nil && clk != nil {
		m.BreakerOpen.SetClock(clk.Now)
	}
	return &Reconciler{
		reader: reader, writer: writer, recorder: recorder, metrics: m, clock: clk, facts: facts, cfg: cfg,
		nodeLimit: newWindow(cfg.NodeLimit), breaker: newWindow(cfg.Breaker),
	}
}

// Reconcile decides the named CSR and applies the decision.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var csr certificatesv1.CertificateSigningRequest
	if err := r.reader.Get(ctx, req.NamespacedName, &csr); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name) // deleted CSRs need no decision
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get CSR %q: %w", req.Name, err)
	}
	// Final CSRs are never touched, whatever else is true of them. Dry-run still judges one that
	// another approver approved, writing nothing but Events and metrics: that is how it shows,
	// beside the approver it is to replace, what it would have denied that the other let through.
	if !servingcsr.InScope(&csr) || servingcsr.IsFinal(&csr) && !(r.cfg.Mode == DryRun && servingcsr.ApprovedByOther(&csr)) {
		r.forget(csr.Name)
		return ctrl.Result{}, nil
	}
	node, _ := servingcsr.NodeName(csr.Spec.Username)
	logger := log.FromContext(ctx).WithValues("csr", klog.KObj(&csr), "node", node)
	ctx = log.IntoContext(ctx, logger)

	// A node's newest CSR is decided first: while a newer CSR of the node is
	// pending, this one waits for it undecided (a cache lookup, no
	// evaluation), so the CSR the kubelet waits for is not queued behind the
	// dozen it gave up on. Waiting never approves; the CSR is evaluated once
	// the newer one is decided.
	s, superseded, err := r.supersession(ctx, &csr, node)
	if err != nil {
		r.metrics.Errors.WithLabelValues("facts").Inc()
		return ctrl.Result{}, err
	}
	if superseded && !s.Final {
		return r.supersede(ctx, &csr, node, s)
	}

	now := r.clock.Now()
	d, err := policy.Evaluate(ctx, r.cfg.Policy, servingcsr.FromAPI(&csr), r.facts, now)
	if err != nil {
		// Could not decide: never approve or deny on an error; retry with backoff.
		r.metrics.Errors.WithLabelValues("facts").Inc()
		return ctrl.Result{}, fmt.Errorf("evaluate CSR %q: %w", csr.Name, err)
	}
	switch d.Verdict {
	case policy.Approve:
		// Only a node's live CSR is approved: the policy's approval of one
		// whose node has a newer approved CSR is set aside (never the
		// reverse: a denial or a hold stands, so a node cannot hide a hostile
		// CSR behind a newer one).
		if superseded {
			return r.supersede(ctx, &csr, node, s)
		}
		return r.approve(ctx, &csr, node, d)
	case policy.Deny:
		return r.deny(ctx, &csr, node, d)
	case policy.Hold:
		return r.hold(ctx, &csr, node, d, r.holdRetry(d, now))
	default:
		return ctrl.Result{}, fmt.Errorf("policy returned no verdict for CSR %q: %+v", csr.Name, d)
	}
}

func (r *Reconciler) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, node string, d policy.Decision) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	now := r.clock.Now()
	if r.cfg.Mode == DryRun {
		if r.firstReport(csr, "approve") {
			r.metrics.Decisions.WithLabelValues("approve", string(d.Reason), string(r.cfg.Mode)).Inc()
			r.record(csr, node, d, corev1.EventTypeNormal, servingcsr.EventWouldApprove, false)
			logger.Info("Would approve CSR (dry run)", "reason", d.Reason)
		}
		return ctrl.Result{}, nil
	}
	// The breaker and the per-node limit hold an approval the policy allows:
	// too many approvals at once means something is wrong upstream of us.
	// Reserving checks and counts under one lock, so parallel workers cannot
	// overshoot a limit; a failed write gives the slot back.
	wait, releaseBreaker := r.breaker.reserve("", now)
	if wait > 0 {
		r.metrics.BreakerOpen.Set(now.Add(wait))
		held := policy.Decision{Verdict: policy.Hold, Reason: ReasonBreakerOpen,
			Message: fmt.Sprintf("breaker: %d approvals in the last %s; approvals are held", r.cfg.Breaker.Max, r.cfg.Breaker.Window)}
		return r.hold(ctx, csr, node, held, wait)
	}
	r.metrics.BreakerOpen.Set(time.Time{})
	wait, releaseNode := r.nodeLimit.reserve(node, now)
	if wait > 0 {
		releaseBreaker()
		held := policy.Decision{Verdict: policy.Hold, Reason: ReasonRateLimited,
			Message: fmt.Sprintf("rate limit: node %q had %d approvals in the last %s", node, r.cfg.NodeLimit.Max, r.cfg.NodeLimit.Window)}
		return r.hold(ctx, csr, node, held, wait)
	}

	approved := csr.DeepCopy() // never mutate the cached object
	approved.Status.Conditions = append(approved.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateApproved,
		Status:         corev1.ConditionTrue,
		Reason:         servingcsr.ApprovedReason,
		Message:        "csrguard: " + d.Message,
		LastUpdateTime: metav1.NewTime(now),
	})
	written, err := r.write(ctx, approved)
	if err != nil || !written {
		releaseBreaker()
		releaseNode()
		return ctrl.Result{}, err
	}
	r.holds.Delete(csr.Name)
	r.metrics.Decisions.WithLabelValues("approve", string(d.Reason), string(r.cfg.Mode)).Inc()
	r.metrics.Applied.WithLabelValues("approve").Inc()
	r.metrics.ApprovalLatency.Observe(now.Sub(csr.CreationTimestamp.Time).Seconds())
	// The Approved condition on the CSR is the record of an approval; an Event
	// per approval would double the API writes of the common case.
	logger.Info("Approved CSR")
	return ctrl.Result{}, nil
}

func (r *Reconciler) deny(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, node string, d policy.Decision) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	if r.cfg.Mode != Enforce {
		// Leave it pending for a human; say so once.
		if r.firstReport(csr, "deny/"+string(d.Reason)) {
			r.metrics.Decisions.WithLabelValues("deny", string(d.Reason), string(r.cfg.Mode)).Inc()
			r.record(csr, node, d, corev1.EventTypeWarning, servingcsr.EventWouldDeny, true)
			logger.Info("Would deny CSR", "mode", r.cfg.Mode, "reason", d.Reason, "message", d.Message)
		}
		return ctrl.Result{}, nil
	}
	written, err := r.write(ctx, r.denial(csr, d.Reason, d.Message))
	if err != nil {
		return ctrl.Result{}, err
	}
	r.holds.Delete(csr.Name)
	if !written {
		return ctrl.Result{}, nil
	}
	r.metrics.Decisions.WithLabelValues("deny", string(d.Reason), string(r.cfg.Mode)).Inc()
	r.metrics.Applied.WithLabelValues("deny").Inc()
	r.record(csr, node, d, corev1.EventTypeWarning, servingcsr.EventDenied, true)
	logger.Info("Denied CSR", "reason", d.Reason, "message", d.Message)
	return ctrl.Result{}, nil
}

// denial returns a copy of csr (never the cached object) with csrguard's Denied condition.
func (r *Reconciler) denial(csr *certificatesv1.CertificateSigningRequest, reason policy.Reason, message string) *certificatesv1.CertificateSigningRequest {
	denied := csr.DeepCopy()
	denied.Status.Conditions = append(denied.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateDenied,
		Status:         corev1.ConditionTrue,
		Reason:         string(reason),
		Message:        "csrguard: " + message,
		LastUpdateTime: metav1.NewTime(r.clock.Now()),
	})
	return denied
}

func (r *Reconciler) hold(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, node string, d policy.Decision, retry time.Duration) (ctrl.Result, error) {
	if r.firstReport(csr, "hold/"+string(d.Reason)) {
		r.metrics.Decisions.WithLabelValues("hold", string(d.Reason), string(r.cfg.Mode)).Inc()
		r.record(csr, node, d, corev1.EventTypeNormal, servingcsr.EventHeld, d.Reason != policy.NodeNotFound)
		log.FromContext(ctx).Info("Held CSR", "reason", d.Reason, "message", d.Message, "retryAfter", retry)
	}
	return ctrl.Result{RequeueAfter: retry}, nil
}

// holdRetry says when a CSR held at now (the time it was decided at) is looked at again without
// a watch event: just after its hold ends, if the policy knows when that is and it is sooner
// than HoldRetry. Until is after now by construction, so this never spins.
func (r *Reconciler) holdRetry(d policy.Decision, now time.Time) time.Duration {
	if left := d.Until.Sub(now); !d.Until.IsZero() && left < r.cfg.HoldRetry {
		return max(left, 0) + 100*time.Millisecond
	}
	return r.cfg.HoldRetry
}

// write sends csr's approval subresource. It reports false, and no error,
// when the CSR is gone: there is nothing left to decide.
func (r *Reconciler) write(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (bool, error) {
	_, err := r.writer.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: "csrguard"})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		// Deleted meanwhile (csrcleaner, or a human).
		return false, nil
	default:
		// A conflict means our cached copy was stale; an outage means we could
		// not write. Either way retry with backoff from a fresh read.
		r.metrics.Errors.WithLabelValues("write").Inc()
		return false, fmt.Errorf("update approval of CSR %q: %w", csr.Name, err)
	}
}

// report is what was last reported for a CSR: a verdict and reason (what), and the UID of the
// CSR it was reported for, so that a CSR deleted and created again under the same name, its
// deletion and creation merged into one Reconcile, is reported afresh.
type report struct {
	uid  types.UID
	what string
}

// firstReport reports whether what (a verdict and reason) is new for this
// CSR, remembering it, so that requeues do not repeat Events and counts.
func (r *Reconciler) firstReport(csr *certificatesv1.CertificateSigningRequest, what string) bool {
	now := report{uid: csr.UID, what: what}
	prev, loaded := r.holds.Swap(csr.Name, now)
	return !loaded || prev != now
}

// record emits an Event on the CSR and, when onNode, on the Node too, so
// `kubectl describe node` shows what a node asked for and was refused.
func (r *Reconciler) record(csr *certificatesv1.CertificateSigningRequest, node string, d policy.Decision, eventType, reason string, onNode bool) {
	if r.recorder == nil {
		return
	}
	var related *corev1.ObjectReference
	if node != "" {
		related = &corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node), APIVersion: "v1"}
	}
	note := fmt.Sprintf("%s: %s", d.Reason, d.Message)
	// The note holds request data: pass it as an argument, never as a format.
	r.recorder.Eventf(csr, related, eventType, reason, "Decide", "%s", truncate(note, maxNote))
	if onNode && related != nil {
		r.recorder.Eventf(related, csr, eventType, reason, "Decide", "%s", truncate("CSR "+csr.Name+": "+note, maxNote))
	}
}

// maxNote is the API server's limit on an Event's note, in bytes.
const maxNote = 1024

// truncate shortens s to at most n bytes on a character boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Reasons the controller adds to the policy's.
const (
	// ReasonRateLimited holds an approval because its node had too many recently.
	ReasonRateLimited policy.Reason = "RateLimited"
	// ReasonBreakerOpen holds an approval because the cluster had too many recently.
	ReasonBreakerOpen policy.Reason = "BreakerOpen"
	// ReasonSuperseded sets aside the approval of a CSR that is not its node's
	// live one (servingcsr.Supersede); it is the reason of the Denied condition
	// once the node has a newer approved or issued CSR.
	ReasonSuperseded policy.Reason = servingcsr.SupersededReason
)

// ParseMode parses a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case Enforce, NoDeny, DryRun:
		return m, nil
	}
	return "", errors.New(`must be one of "enforce", "no-deny", "dry-run"`)
}
