package storm

import (
	"context"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// seen is when the watch first saw a CSR in each state.
type seen struct {
	approved, issued, final time.Time
}

// progress is the watch's count of the storm's CSRs.
type progress struct {
	// approved counts legitimate CSRs seen approved; final CSRs seen as they
	// must end or can no longer change (approved and issued, or denied, or
	// failed; hostile ones approved or denied).
	approved, final int
	// lastApproval is when the last legitimate CSR was seen approved.
	lastApproval time.Time
}

// stormWatch records, as an administrator on its own connection, when each
// CSR of the storm was first seen approved, issued and final: when any
// client could see it, not when csrguard believed it wrote it. After a fault
// its informer lists again and catches up.
type stormWatch struct {
	want    map[string]Kind
	factory informers.SharedInformerFactory
	cancel  context.CancelFunc

	mu   sync.Mutex
	seen map[string]*seen
}

func watchStorm(ctx context.Context, admin kubernetes.Interface, want map[string]Kind) (*stormWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &stormWatch{want: want, cancel: cancel, seen: map[string]*seen{}}
	w.factory = informers.NewSharedInformerFactoryWithOptions(admin, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String()
	}))
	inf := w.factory.Certificates().V1().CertificateSigningRequests().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.record,
		UpdateFunc: func(_, obj any) { w.record(obj) },
	}); err != nil {
		cancel()
		return nil, err
	}
	w.factory.Start(ctx.Done())
	for typ, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("watch %v: cache not synced", typ)
		}
	}
	return w, nil
}

func (w *stormWatch) record(obj any) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return
	}
	kind, ok := w.want[csr.Name]
	if !ok {
		return
	}
	now := time.Now()
	state := servingcsr.StateOf(csr)
	approved := !servingcsr.ApprovedAt(csr).IsZero()
	final := state == servingcsr.Issued || state == servingcsr.Denied || state == servingcsr.Failed || kind == Hostile && approved
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.seen[csr.Name]
	if s == nil {
		s = &seen{}
		w.seen[csr.Name] = s
	}
	first := func(t *time.Time, cond bool) {
		if cond && t.IsZero() {
			*t = now
		}
	}
	first(&s.approved, approved)
	first(&s.issued, state == servingcsr.Issued)
	first(&s.final, final)
}

func (w *stormWatch) progress() progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	var p progress
	for name, s := range w.seen {
		if !s.final.IsZero() {
			p.final++
		}
		if w.want[name] == Legitimate && !s.approved.IsZero() {
			p.approved++
			if s.approved.After(p.lastApproval) {
				p.lastApproval = s.approved
			}
		}
	}
	return p
}

func (w *stormWatch) stop() {
	w.cancel()
	w.factory.Shutdown()
}
