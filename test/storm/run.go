package storm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/test/controlplane"
)

// Result is what one fault run measured and found.
type Result struct {
	Fault Fault
	// Verdict is Check's verdict on the API server's CSRs at the end.
	Verdict Verdict
	// Healed is how long the fault lasted: from its injection until the API
	// server answered again (restarts), another replica acquired the Lease
	// (leader faults), or the connections were cut (watch expiry).
	Healed time.Duration
	// ToLastApproval is from the fault healing to the last legitimate CSR
	// seen approved; zero if every one was approved before it healed.
	ToLastApproval time.Duration
	// Total is from the first CSR filed to the last seen approved.
	Total time.Duration
	// WriteErrors are csrguard's decision writes that failed and were
	// retried (csrguard_errors_total{stage="write"}, summed over replicas).
	WriteErrors float64
	// CreateRetries are CSR creates the storm retried: what the fault cost
	// the kubelets.
	CreateRetries int64
	// Exited names the replicas that exited on their own (a leader that
	// lost its Lease steps down by exiting; a Deployment restarts it).
	Exited []string
	// Detail says what the fault did: the connections it cut and the watches
	// that expired, what the resumed leader wrote before it stepped down.
	Detail string
}

// Run files a storm of CSRs against cp, decided by the csrguard replicas
// (started by the caller with ReplicaFlags, in Namespace, at least two for
// the leader faults), injects fault f once a third of the CSRs are filed and
// some approved, and waits until every CSR is decided. It returns what it
// measured and, as the error, a harness failure or the invariants Check
// found broken.
func Run(ctx context.Context, cp *controlplane.ControlPlane, replicas []Replica, f Fault, o Options) (Result, error) {
	o.defaults()
	r := Result{Fault: f}
	if (f == LeaderKill || f == LeaderPause) && len(replicas) < 2 {
		return r, fmt.Errorf("fault %s needs two replicas, got %d", f, len(replicas))
	}
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return r, err
	}
	nodes, err := registerNodes(ctx, cp, o.Nodes, o.Clients)
	if err != nil {
		return r, err
	}
	filings, err := plan(nodes, o.HostileEvery)
	if err != nil {
		return r, err
	}
	want := map[string]Kind{}
	for _, fs := range filings {
		for _, fl := range fs {
			want[fl.csr.Name] = fl.kind
		}
	}
	o.Logf("storm: %d nodes registered; filing %d CSRs (%d hostile) at %.0f/s; fault %s", len(nodes), len(want), len(want)-len(nodes), o.Rate, f)

	rw := watchReplicas(ctx, replicas)
	defer rw.stop()
	sw, err := watchStorm(ctx, admin, want)
	if err != nil {
		return r, err
	}
	defer sw.stop()
	if err := poll(ctx, o.Timeout, "a csrguard replica to lead", func() bool { _, ok := rw.leader(); return ok }); err != nil {
		return r, err
	}

	fileCtx, stopFiling := context.WithTimeout(ctx, 2*o.Timeout)
	defer stopFiling()
	start := time.Now()
	fl := file(fileCtx, filings, o.Clients, o.Rate)
	err = poll(ctx, o.Timeout, "a third of the CSRs filed and one approved", func() bool {
		return fl.filed.Load() >= int64(len(want)/3) && sw.progress().approved > 0
	})
	if err != nil {
		return r, err
	}
	p := sw.progress()
	o.Logf("storm: injecting %s with %d of %d CSRs filed, %d approved", f, fl.filed.Load(), len(want), p.approved)
	injected := time.Now()
	healed, detail, err := inject(ctx, cp, admin, rw, f, o)
	if err != nil {
		return r, fmt.Errorf("inject %s: %w", f, err)
	}
	r.Healed = healed.Sub(injected)
	o.Logf("storm: %s healed after %s", f, r.Healed.Round(time.Millisecond))

	<-fl.done
	if fl.err != nil {
		return r, fmt.Errorf("file CSRs: %w", fl.err)
	}
	waitErr := poll(ctx, o.Timeout, "every CSR decided", func() bool { return sw.progress().final == len(want) })
	p = sw.progress()
	r.Total = p.lastApproval.Sub(start)
	r.ToLastApproval = max(0, p.lastApproval.Sub(healed))
	r.WriteErrors = rw.writeErrors()
	r.CreateRetries = fl.retries.Load()
	if detail.after != nil {
		r.Detail, err = detail.after(ctx)
		waitErr = errors.Join(waitErr, err)
	}
	for i, rep := range replicas {
		if rep.Process.Exited() && i != detail.killed {
			r.Exited = append(r.Exited, rep.Name)
		}
	}

	list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String(),
	})
	if err != nil {
		return r, errors.Join(waitErr, fmt.Errorf("list CSRs: %w", err))
	}
	r.Verdict = Check(want, list.Items)
	return r, errors.Join(waitErr, r.Verdict.Err())
}

// injected says what inject did beyond healing.
type injected struct {
	// killed is the index of the replica the fault killed, or -1.
	killed int
	// after, if set, finishes the fault's own checks once the storm is
	// decided and describes what happened; its error is a broken invariant.
	after func(context.Context) (string, error)
}

// inject injects f and returns when it healed.
func inject(ctx context.Context, cp *controlplane.ControlPlane, admin kubernetes.Interface, rw *replicaWatch, f Fault, o Options) (time.Time, injected, error) {
	none := injected{killed: -1}
	switch f {
	case APIServerRestart, EtcdRestart:
		restart := cp.RestartAPIServer
		if f == EtcdRestart {
			restart = cp.RestartEtcd
		}
		out := watchOutage(ctx, admin)
		defer out.stop()
		if err := restart(ctx); err != nil {
			return time.Time{}, none, err
		}
		healed, err := out.healed(ctx, o.Timeout)
		return healed, none, err
	case LeaderKill, LeaderPause:
		return failover(ctx, admin, rw, f, o)
	case WatchExpiry:
		apiserverLog := cp.LogFile("kube-apiserver")
		offset := logSize(apiserverLog)
		rev, err := cp.CompactEtcd(ctx)
		if err != nil {
			return time.Time{}, none, err
		}
		conns, err := cp.DropConnections()
		if err != nil {
			return time.Time{}, none, err
		}
		healed := time.Now()
		none.after = func(context.Context) (string, error) {
			// The API server logs each watch it resumed from a compacted
			// revision; its client got 410 Gone and its informer listed again.
			expired := countLines(apiserverLog, offset, compactedWatch)[0]
			detail := fmt.Sprintf("etcd compacted at revision %d, %d connections cut, %d watches expired (410 Gone)", rev, conns, expired)
			if expired == 0 {
				return detail, errors.New("no watch resumed from a compacted revision: the watch expiry did not happen")
			}
			return detail, nil
		}
		return healed, none, nil
	}
	return time.Time{}, none, fmt.Errorf("unknown fault %q", f)
}

// outage polls the API server for a CSR every 100 ms (one at most, a
// consistent read that needs etcd) and records when it answered again after
// it last failed: when the API server serves again, which can be before its
// /readyz says so.
type outage struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu               sync.Mutex
	failed, answered time.Time // the last failure; the first answer after it
}

func watchOutage(ctx context.Context, admin kubernetes.Interface) *outage {
	ctx, cancel := context.WithCancel(ctx)
	o := &outage{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			attempt, cancel := context.WithTimeout(ctx, time.Second)
			_, err := admin.CertificatesV1().CertificateSigningRequests().List(attempt, metav1.ListOptions{Limit: 1})
			cancel()
			now := time.Now()
			o.mu.Lock()
			defer o.mu.Unlock()
			switch {
			case err != nil && ctx.Err() == nil:
				o.failed, o.answered = now, time.Time{}
			case err == nil && o.answered.IsZero():
				o.answered = now
			}
			return false, nil
		})
	}()
	return o
}

// healed waits until the API server has answered after its last failure and
// returns when it did; if no failure was seen, when it was asked.
func (o *outage) healed(ctx context.Context, timeout time.Duration) (time.Time, error) {
	asked := time.Now()
	var at time.Time
	err := poll(ctx, timeout, "the API server to answer again", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.failed.IsZero() {
			at = asked
			return true
		}
		at = o.answered
		return !at.IsZero()
	})
	return at, err
}

func (o *outage) stop() {
	o.cancel()
	<-o.done
}

// failover kills (LeaderKill) or pauses (LeaderPause) the leading replica and
// returns when another leads. A paused leader is resumed then, and must step
// down by exiting: until it notices its Lease is gone it may still write a
// decision, which the API server refuses unless the CSR is unchanged since
// the old leader read it (the write carries that resourceVersion), so it can
// never contradict the new leader's.
func failover(ctx context.Context, admin kubernetes.Interface, rw *replicaWatch, f Fault, o Options) (time.Time, injected, error) {
	done := injected{killed: -1}
	old := -1
	if err := poll(ctx, o.Timeout, "one replica to lead", func() bool { i, ok := rw.leader(); old = i; return ok }); err != nil {
		return time.Time{}, done, err
	}
	rep := rw.replicas[old]
	paused := time.Now()
	if f == LeaderKill {
		rep.Process.Kill()
		done.killed = old
	} else if err := rep.Process.Pause(); err != nil {
		return time.Time{}, done, err
	}
	err := poll(ctx, o.Timeout, "another replica to lead", func() bool {
		i, ok := rw.leader()
		return ok && i != old
	})
	// The new leader wrote when it acquired the Lease, to the microsecond;
	// the scrapes that noticed it are up to 250 ms later.
	healed := time.Now()
	if lease, lerr := admin.CoordinationV1().Leases(Namespace).Get(ctx, LeaseName, metav1.GetOptions{}); lerr == nil && lease.Spec.AcquireTime != nil {
		healed = lease.Spec.AcquireTime.Time
	}
	if f == LeaderKill || err != nil {
		if f == LeaderPause {
			_ = rep.Process.Resume()
		}
		return healed, done, err
	}
	offset := logSize(rep.Log)
	if err := rep.Process.Resume(); err != nil {
		return healed, done, err
	}
	pause := time.Since(paused)
	done.killed = old // it is to exit: that is how it steps down
	resumed := time.Now()
	done.after = func(ctx context.Context) (string, error) {
		exited := poll(ctx, o.Timeout, "the resumed leader to step down and exit", rep.Process.Exited)
		refused := countLines(rep.Log, offset, conflict)[0]
		late, inFlight := 0, 0
		for _, name := range decided(rep.Log, offset) {
			// A decision's condition carries when the decider made it (to the
			// second): before the pause for a write that was in flight.
			csr, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			if decisionTime(csr).Before(resumed.Truncate(time.Second)) {
				inFlight++
			} else {
				late++
			}
		}
		detail := fmt.Sprintf("%s paused for %s; once resumed, before it stepped down, it wrote %d decisions (and %d in flight when paused) and had %d writes refused as conflicts",
			rep.Name, pause.Round(100*time.Millisecond), late, inFlight, refused)
		if exited != nil {
			return detail, fmt.Errorf("%s resumed after losing its Lease and did not exit: %w", rep.Name, exited)
		}
		return detail + "; then it exited", nil
	}
	return healed, done, nil
}

// logSize is the size of the file at path, 0 if unknown.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// decidedName finds the CSR in a log line of csrguard's.
var decidedName = regexp.MustCompile(`"csr": \{"name":"([^"]+)"\}`)

// decided returns the CSRs whose approval or denial csrguard logged in the
// file at path after offset: decisions it wrote.
func decided(path string, offset int64) []string {
	var names []string
	forLines(path, offset, func(line string) {
		if strings.Contains(line, "Approved CSR") || strings.Contains(line, "Denied CSR") || strings.Contains(line, "Denied superseded CSR") {
			if m := decidedName.FindStringSubmatch(line); m != nil {
				names = append(names, m[1])
			}
		}
	})
	return names
}

// decisionTime is the LastUpdateTime of csr's Approved or Denied condition.
func decisionTime(csr *certificatesv1.CertificateSigningRequest) time.Time {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied {
			return c.LastUpdateTime.Time
		}
	}
	return time.Time{}
}

// What the logs say when a watch expired, and when a decision was refused
// because the CSR changed since it was read.
const (
	compactedWatch = "required revision has been compacted"
	conflict       = "the object has been modified"
)

// countLines counts, for each of substrings, the lines of the file at path
// after offset that contain it.
func countLines(path string, offset int64, substrings ...string) []int {
	n := make([]int, len(substrings))
	forLines(path, offset, func(line string) {
		for i, s := range substrings {
			if strings.Contains(line, s) {
				n[i]++
			}
		}
	})
	return n
}

// forLines calls f with each line of the file at path after offset; a file
// that cannot be read has no lines.
func forLines(path string, offset int64, f func(string)) {
	fh, err := os.Open(path)
	if err != nil {
		return
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, io.SeekStart); err != nil {
		return
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f(sc.Text())
	}
}

// poll checks cond every 50 ms until it holds, failing when timeout passes or
// ctx ends: no fixed sleep decides an outcome.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}
