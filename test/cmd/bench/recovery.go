package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/storm"
)

// recoveryResult is what the recovery phase measured.
type recoveryResult struct {
	nodes, pending int
	// ready is from csrguard's start to its /readyz; issued from its start to
	// the newest CSR of every node holding a certificate; cleaned from its
	// start to every older CSR being denied.
	ready, issued, cleaned time.Duration
	// approved counts the nodes whose newest CSR was approved; wrong counts
	// approvals of any other CSR; superseded counts denials as Superseded.
	approved, wrong, superseded int
}

// benchRecovery measures the end of a long outage. On a fresh control plane
// it registers --recovery-nodes Nodes; each files --recovery-pending CSRs as
// the node itself with no approver running, the newest last (the one its
// kubelet would wait for; the others it gave up on). Then it starts csrguard
// and reports when every newest CSR was issued and every older one denied. It
// fails unless each node has exactly one approved CSR, its newest.
func benchRecovery(ctx context.Context, o options) (*recoveryResult, error) {
	dir := filepath.Join(o.dir, "recovery")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	defer func() { _ = cp.Stop() }()
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return nil, err
	}
	nodes, err := registerNodes(ctx, cp, o.recoveryNodes, o.clients, nodeAddr)
	if err != nil {
		return nil, err
	}

	// The outage: every node's abandoned CSRs, then the newest. The names sort
	// before the newest's, so that one created in the same second is still older.
	older := o.recoveryPending - 1
	var filed atomic.Int64
	stop := progress("abandoned CSRs filed", &filed, len(nodes)*older)
	err = storm.Parallel(ctx, len(nodes)*older, o.clients, func(ctx context.Context, i int) error {
		n := nodes[i/older]
		csr, err := servingCSR(n.name, nodeAddr(i/older))
		if err != nil {
			return err
		}
		csr.Name = fmt.Sprintf("%s-abandoned-%02d", n.name, i%older)
		if _, err := n.client.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create CSR as %s: %w", n.name, err)
		}
		filed.Add(1)
		return nil
	})
	stop()
	if err != nil {
		return nil, err
	}
	if _, _, err := createCSRs(ctx, nodes, o.clients); err != nil {
		return nil, err
	}
	newest := map[string]bool{}
	for _, n := range nodes {
		newest[n.csr.Name] = true
	}

	start := time.Now()
	proc, _, err := startApprover(ctx, cp, o, "csrguard", dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = proc.Stop() }()
	r := &recoveryResult{nodes: len(nodes), pending: o.recoveryPending, ready: time.Since(start)}

	// Poll the server: what counts is what any client sees.
	var issued, denied atomic.Int64
	stopIssued := progress("newest CSRs issued", &issued, len(nodes))
	err = pollEvery(ctx, 200*time.Millisecond, o.timeout, func() (bool, error) {
		s, err := recoveryState(ctx, admin, newest)
		if err != nil {
			return false, err
		}
		issued.Store(int64(s.issued))
		denied.Store(int64(s.superseded))
		if r.issued == 0 && s.issued == len(nodes) {
			r.issued = time.Since(start)
		}
		if r.issued > 0 && s.superseded == len(nodes)*older {
			r.cleaned = time.Since(start)
			return true, nil
		}
		if proc.Exited() {
			return false, fmt.Errorf("csrguard exited: %w", proc.Err())
		}
		return false, nil
	})
	stopIssued()
	s, serr := recoveryState(ctx, admin, newest)
	if serr != nil {
		return r, serr
	}
	r.approved, r.wrong, r.superseded = s.approved, s.wrong, s.superseded
	if err != nil {
		return r, fmt.Errorf("%d of %d newest CSRs issued, %d of %d older ones denied: %w; csrguard log: %s",
			s.issued, len(nodes), s.superseded, len(nodes)*older, err, filepath.Join(dir, "logs", "csrguard.log"))
	}
	if r.approved != len(nodes) || r.wrong != 0 {
		return r, fmt.Errorf("approved the newest CSR of %d of %d nodes and %d other CSRs; want every newest and nothing else", r.approved, len(nodes), r.wrong)
	}
	return r, nil
}

// recoveryCounts is the server's view of the recovery.
type recoveryCounts struct{ issued, approved, wrong, superseded int }

// recoveryState counts, among the kubelet-serving CSRs, the newest ones
// issued and approved, the approvals of others, and denials as Superseded.
func recoveryState(ctx context.Context, admin kubernetes.Interface, newest map[string]bool) (recoveryCounts, error) {
	list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String(),
	})
	if err != nil {
		return recoveryCounts{}, fmt.Errorf("list CSRs: %w", err)
	}
	var c recoveryCounts
	for i := range list.Items {
		csr := &list.Items[i]
		if !servingcsr.ApprovedAt(csr).IsZero() {
			if newest[csr.Name] {
				c.approved++
			} else {
				c.wrong++
			}
		}
		if newest[csr.Name] && len(csr.Status.Certificate) > 0 {
			c.issued++
		}
		for _, cond := range csr.Status.Conditions {
			if cond.Type == certificatesv1.CertificateDenied && cond.Reason == servingcsr.SupersededReason {
				c.superseded++
			}
		}
	}
	return c, nil
}

// printRecoveryTable writes the recovery phase's result as a Markdown table.
func printRecoveryTable(w io.Writer, o options, r recoveryResult) {
	fmt.Fprintf(w, "Recovery after an outage: %d nodes each with %d pending CSRs (the newest the one its kubelet waits for), then csrguard started with its defaults (--node-approval-limit 10 per hour) and --workers=%d; %d CPUs shared by the control plane, csrguard and this program.\n\n",
		r.nodes, r.pending, o.workers, runtime.NumCPU())
	fmt.Fprintln(w, "| nodes × pending CSRs | csrguard ready after | every node's newest issued after | older ones denied (Superseded) after | newest approved | other CSRs approved | denied as Superseded |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d × %d | %s | %s | %s | %d/%d | %d | %d/%d |\n",
		r.nodes, r.pending, secs(r.ready), secs(r.issued), secs(r.cleaned), r.approved, r.nodes, r.wrong, r.superseded, r.nodes*(r.pending-1))
	fmt.Fprintln(w, "\nTimes count from csrguard's start (process start, cache sync and discovery included), as seen by polling the API server every 200 ms.")
}
