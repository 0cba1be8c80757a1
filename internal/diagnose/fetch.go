// Package diagnose owns the diagnosis of a cluster's kubelet serving
// certificates for the doctor and certs commands.
//
// Fetch reads everything once (Nodes, kubelet-serving CSRs, the approvers
// that run, the CA pods trust, and optionally a TLS probe of every kubelet)
// into a Snapshot. Diagnose and Certs are pure functions of a Snapshot, so
// every finding can be tested with a hand-built one; NewReport and Preflight
// summarise them as data. The package prints nothing (package cli does),
// writes nothing to the cluster and decides no CSR: Nodes, CSRs and the
// policy's facts are read through package kube, what the policy would decide
// comes from package policy, probes from package monitor.
package diagnose

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// Options says how Fetch reads the cluster.
type Options struct {
	// Probe makes Fetch probe every kubelet with a TLS handshake from here.
	Probe bool
	// Prober holds the probe timeout and the optional kubelet-serving CA roots.
	Prober monitor.Prober
	// Concurrency bounds the probes in flight; default 64.
	Concurrency int
	// Policy is the policy the controller would use; the zero Config means
	// policy.DefaultConfig().
	Policy policy.Config
	// Static holds API server addresses and service CIDRs to add to the
	// discovered ones, as the controller's flags do.
	Static policy.Cluster
	// APIServer is how the API server is reached; its certificate is one
	// source of the API server's identity. Namespace is csrguard's, where it
	// records address claims and the API server's past addresses.
	APIServer *rest.Config
	Namespace string
	// LeaseName is the name of csrguard's leader-election Lease; default "csrguard".
	LeaseName string
	// Progress, if set, is called after each probe.
	Progress func(done, total int)
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Snapshot is what Fetch read from a cluster at one moment. Diagnose and
// Certs derive everything from it.
type Snapshot struct {
	Now   time.Time
	Nodes []corev1.Node
	// CSRs holds the kubelet-serving CSRs only.
	CSRs []certificatesv1.CertificateSigningRequest
	// Probes holds the probe result by node; nil when not probed or when
	// probing failed wholesale (then ProbeNote says why).
	Probes map[string]monitor.Result
	// ProbeNote says why probing was skipped or failed wholesale, e.g. every
	// probe timed out from here; findings then rest on what the API shows.
	ProbeNote string
	// Approvers lists what approves kubelet-serving CSRs, as detected.
	Approvers []Approver
	// Cluster holds the API server's identity and the service CIDRs
	// (discovered, remembered by csrguard, and Options.Static); ClusterErr is
	// why they could not be read, if so.
	Cluster    policy.Cluster
	ClusterErr string
	// NoServiceCIDRAPI is true when the API server serves no ServiceCIDR
	// objects (kube.Found); StaticServiceCIDRs are the --service-cidrs given
	// to this command. Without the API and without the flag, the service range
	// is unknown to csrguard.
	NoServiceCIDRAPI   bool
	StaticServiceCIDRs []netip.Prefix
	// Policy is the policy the decisions were made with.
	Policy policy.Config
	// Claims and Namespaces are the rest of what the policy decides with:
	// csrguard's recorded address claims and the namespaces that exist.
	Claims     map[string]policy.Claim
	Namespaces []string
	// Decisions holds, by CSR name, what the policy would decide on each
	// pending CSR.
	Decisions map[string]policy.Decision
	// PodTrustedCAs are the certificates of ConfigMap kube-system/kube-root-ca.crt
	// (key ca.crt), which every pod trusts; nil when absent.
	PodTrustedCAs []*x509.Certificate
	// Notes lists what Fetch could not read (forbidden or absent), so that
	// findings resting on it can say so.
	Notes []string
	// Events are csrguard's Events on CSRs (namespace default), read when no
	// Lease or Deployment shows a running csrguard or when another approver
	// approved a CSR; nil otherwise, or when they could not be read (Notes).
	Events []corev1.Event
	// MetricsServers lists the metrics-server Deployments found; they scrape
	// every kubelet over TLS.
	MetricsServers []MetricsServer
	// NodeMetrics is what the metrics API (kubectl top nodes) serves, read
	// when a metrics-server was found; nil otherwise.
	NodeMetrics *NodeMetrics
}

// MetricsServer is a metrics-server Deployment and how it verifies kubelets.
type MetricsServer struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Ready     bool   `json:"ready"`
	// InsecureTLS is true with --kubelet-insecure-tls: kubelet certificates
	// are not verified at all.
	InsecureTLS bool `json:"insecureTLS"`
	// CAFile is --kubelet-certificate-authority, if set.
	CAFile string `json:"caFile,omitempty"`
}

// NodeMetrics is the metrics API's answer: the nodes it has metrics for, or
// why it failed.
type NodeMetrics struct {
	Nodes []string `json:"nodes"`
	Err   string   `json:"error,omitempty"`
}

// talosCCMController is the talos-cloud-controller-manager controller that
// approves kubelet-serving CSRs.
const talosCCMController = "certificatesigningrequest-approving-controller"

// Approver is one thing found in the cluster that approves kubelet-serving CSRs.
type Approver struct {
	// Name and Namespace name the object it was found by.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Kind is one of the servingcsr.Approver* names.
	Kind string `json:"kind"`
	// Where is the object it was found by, as "Deployment ns/name" or "Lease ns/name",
	// or for csrguard's recent decisions "CertificateSigningRequest name" or "Event ns/name".
	Where string `json:"where"`
	// Ready reports whether it runs: a Deployment with a ready replica, a
	// Lease held and renewed within twice its duration, a recent decision.
	Ready bool `json:"ready"`
	// Mode is csrguard's --mode ("enforce", "no-deny", "dry-run") when known.
	Mode string `json:"mode,omitempty"`
	// ServiceCIDRs is a csrguard Deployment's --service-cidrs, if set.
	ServiceCIDRs string `json:"serviceCIDRs,omitempty"`
	// Detail says what was seen: replicas, image, holder, renewal age.
	Detail string `json:"detail"`
}

// approves reports whether a approves CSRs: it runs and is not in dry-run mode.
func (a Approver) approves() bool { return a.Ready && a.Mode != "dry-run" }

// DefaultConcurrency is the default number of probes in flight.
const DefaultConcurrency = 64

// Fetch reads the cluster into a Snapshot: Nodes and kubelet-serving CSRs
// through cs, what else the policy decides with through reader
// (kube.ReadSnapshot; a failure is recorded in ClusterErr), the policy's
// decision on every pending CSR, the approvers that run, the CA pods trust,
// and, with opts.Probe, a TLS probe of every kubelet. Forbidden reads of the
// optional parts are recorded in Notes; failing to list Nodes or CSRs is an
// error.
func Fetch(ctx context.Context, cs kubernetes.Interface, reader client.Reader, opts Options) (Snapshot, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	cfg := opts.Policy
	if cfg.MaxExpiration == 0 && cfg.MaxSANs == 0 && cfg.ClusterDomain == "" {
		cfg = policy.DefaultConfig()
	}
	if err := cfg.Validate(); err != nil {
		return Snapshot{}, fmt.Errorf("policy: %w", err)
	}
	s := Snapshot{Now: now(), Policy: cfg}

	var err error
	if s.Nodes, err = kube.ListNodes(ctx, cs); err != nil {
		return Snapshot{}, err
	}
	if s.CSRs, err = kube.ListServingCSRs(ctx, cs); err != nil {
		return Snapshot{}, err
	}

	// Without discovery, the flags' values are all there is.
	s.Cluster = kube.Merge(policy.Cluster{}, nil, opts.Static)
	s.StaticServiceCIDRs = opts.Static.ServiceCIDRs
	if reader == nil {
		s.ClusterErr = "no reader to discover API server addresses and service CIDRs"
	} else if ps, found, err := kube.ReadSnapshot(ctx, reader, opts.APIServer, opts.Namespace, opts.Static, s.Nodes); err != nil {
		s.ClusterErr = err.Error()
	} else {
		s.Cluster, s.Claims, s.Namespaces = ps.Cluster, ps.Claims, ps.Namespaces
		s.NoServiceCIDRAPI = found.NoServiceCIDRAPI
	}
	s.Decisions = decide(ctx, cfg, s)

	leaseName := opts.LeaseName
	if leaseName == "" {
		leaseName = "csrguard"
	}
	if err := s.detectApprovers(ctx, cs, leaseName); err != nil {
		return Snapshot{}, err
	}
	if err := s.readPodTrustedCAs(ctx, cs); err != nil {
		return Snapshot{}, err
	}
	if len(s.MetricsServers) > 0 {
		s.NodeMetrics = readNodeMetrics(ctx, cs)
	}

	if !opts.Probe {
		s.ProbeNote = "kubelets not probed; using what the API shows"
		return s, nil
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	results := monitor.ProbeAll(ctx, opts.Prober, s.Nodes, conc, opts.Progress)
	if err := ctx.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("probe kubelets: %w", err)
	}
	if note := wholesaleFailure(results); note != "" {
		s.ProbeNote = note
		return s, nil
	}
	s.Probes = make(map[string]monitor.Result, len(results))
	for _, r := range results {
		s.Probes[r.Node] = r
	}
	return s, nil
}

// policySnapshot is what the policy decides with in s.
func (s Snapshot) policySnapshot() policy.Snapshot {
	return policy.Snapshot{Nodes: policy.FromNodes(s.Nodes), Cluster: s.Cluster, Claims: s.Claims, Namespaces: s.Namespaces}
}

// decide evaluates every pending CSR as the controller would. A CSR the
// policy cannot decide (an error) gets no entry.
func decide(ctx context.Context, cfg policy.Config, s Snapshot) map[string]policy.Decision {
	facts := policy.NewSnapshotFacts(s.policySnapshot())
	out := map[string]policy.Decision{}
	for i := range s.CSRs {
		csr := &s.CSRs[i]
		if servingcsr.StateOf(csr) != servingcsr.Pending {
			continue
		}
		d, err := policy.Evaluate(ctx, cfg, servingcsr.FromAPI(csr), facts, s.Now)
		if err != nil {
			continue
		}
		out[csr.Name] = d
	}
	return out
}

// wholesaleFailure returns a note when every probe failed to reach its
// kubelet (timeout, refused, other): probing from here is then impossible
// and the findings fall back to the API's view. Any probe that got a TLS
// verdict, even no-serving-certificate, shows kubelets are reachable.
func wholesaleFailure(results []monitor.Result) string {
	if len(results) == 0 {
		return ""
	}
	counts := map[string]int{}
	for _, r := range results {
		switch r.State {
		case metrics.ProbeTimeout, metrics.ProbeRefused, metrics.ProbeOther:
			counts[r.State]++
		default:
			return ""
		}
	}
	var parts []string
	for _, st := range []string{metrics.ProbeTimeout, metrics.ProbeRefused, metrics.ProbeOther} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	first := results[0]
	return fmt.Sprintf("kubelets unreachable from here (every probe failed: %s; e.g. %s: %v); using what the API shows",
		strings.Join(parts, ", "), first.Node, first.Err)
}

// detectApprovers finds csrguard's Lease and the Deployments of known
// approvers. A forbidden or absent API is a note, not an error.
func (s *Snapshot) detectApprovers(ctx context.Context, cs kubernetes.Interface, leaseName string) error {
	leases, err := cs.CoordinationV1().Leases(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + leaseName})
	switch {
	case err == nil:
		for _, l := range leases.Items {
			if l.Name == leaseName {
				s.Approvers = append(s.Approvers, leaseApprover(&l, s.Now))
			}
		}
	case apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
		s.Notes = append(s.Notes, fmt.Sprintf("cannot list Leases to find csrguard's leader: %v", reason(err)))
	default:
		return fmt.Errorf("list leases: %w", err)
	}

	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, opts)
		if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
			s.Notes = append(s.Notes, fmt.Sprintf("cannot list Deployments to find approvers: %v", reason(err)))
			break
		}
		if err != nil {
			return fmt.Errorf("list deployments: %w", err)
		}
		for i := range list.Items {
			if a, ok := deploymentApprover(&list.Items[i]); ok {
				s.Approvers = append(s.Approvers, a)
			}
			if m, ok := metricsServer(&list.Items[i]); ok {
				s.MetricsServers = append(s.MetricsServers, m)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	s.detectDecidingCSRGuard(ctx, cs)

	// A Lease says csrguard runs, not how: take the mode of the csrguard
	// Deployment beside it.
	for i, a := range s.Approvers {
		if a.Kind != servingcsr.ApproverCSRGuard || !strings.HasPrefix(a.Where, "Lease ") {
			continue
		}
		for _, d := range s.Approvers {
			if d.Kind == servingcsr.ApproverCSRGuard && d.Namespace == a.Namespace && strings.HasPrefix(d.Where, "Deployment ") {
				s.Approvers[i].Mode = d.Mode
				break
			}
		}
	}
	sort.Slice(s.Approvers, func(i, j int) bool {
		a, b := s.Approvers[i], s.Approvers[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Where < b.Where
	})
	return nil
}

func reason(err error) string {
	if st, ok := err.(apierrors.APIStatus); ok {
		return strings.ToLower(string(st.Status().Reason))
	}
	return err.Error()
}

// leaseApprover reads csrguard's leader-election Lease: it runs if the Lease
// is held and was renewed within twice its duration.
func leaseApprover(l *coordinationv1.Lease, now time.Time) Approver {
	a := Approver{Name: l.Name, Namespace: l.Namespace, Kind: servingcsr.ApproverCSRGuard, Where: "Lease " + l.Namespace + "/" + l.Name}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	duration := 15 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	switch {
	case holder == "":
		a.Detail = "no leader: the Lease is not held"
	case l.Spec.RenewTime == nil:
		a.Detail = fmt.Sprintf("held by %s but never renewed", holder)
	default:
		age := now.Sub(l.Spec.RenewTime.Time)
		a.Ready = age < 2*duration
		if a.Ready {
			a.Detail = fmt.Sprintf("leader %s, renewed %s ago", holder, human.Duration(age))
		} else {
			a.Detail = fmt.Sprintf("leader %s last renewed %s ago (lease duration %s): no live leader", holder, human.Duration(age), duration)
		}
	}
	return a
}

// deploymentApprover recognises a Deployment of a known approver by its name
// or its container images.
func deploymentApprover(d *appsv1.Deployment) (Approver, bool) {
	var images, args []string
	for _, c := range d.Spec.Template.Spec.Containers {
		images = append(images, c.Image)
		args = append(args, c.Command...)
		args = append(args, c.Args...)
	}
	has := func(s string) bool {
		return strings.Contains(d.Name, s) || slices.ContainsFunc(images, func(img string) bool { return strings.Contains(img, s) })
	}
	a := Approver{Name: d.Name, Namespace: d.Namespace, Where: "Deployment " + d.Namespace + "/" + d.Name}
	switch {
	case has("csrguard"):
		a.Kind = servingcsr.ApproverCSRGuard
		a.Mode = flagValue(args, "mode")
		if a.Mode == "" {
			a.Mode = "enforce"
		}
		a.ServiceCIDRs = flagValue(args, "service-cidrs")
	case has(servingcsr.ApproverAlex1989hu):
		a.Kind = servingcsr.ApproverAlex1989hu
	case has(servingcsr.ApproverPostfinance):
		a.Kind = servingcsr.ApproverPostfinance
	case has(servingcsr.ApproverTalosCCM) && slices.ContainsFunc(args, func(s string) bool {
		// The Talos CCM names its approving controller node-csr-approval;
		// older docs used kube-controller-manager's name for it.
		return strings.Contains(s, talosCCMController) || strings.Contains(s, "node-csr-approval")
	}):
		a.Kind = servingcsr.ApproverTalosCCM
	default:
		return Approver{}, false
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	a.Ready = d.Status.ReadyReplicas > 0
	a.Detail = fmt.Sprintf("%d/%d replicas ready", d.Status.ReadyReplicas, want)
	if len(images) > 0 {
		a.Detail += ", image " + strings.Join(images, ", ")
	}
	if a.Kind == servingcsr.ApproverCSRGuard && a.Mode != "enforce" {
		a.Detail += ", --mode=" + a.Mode
	}
	return a, true
}

// metricsServer recognises a metrics-server Deployment by name or image.
func metricsServer(d *appsv1.Deployment) (MetricsServer, bool) {
	var args []string
	found := strings.Contains(d.Name, "metrics-server")
	for _, c := range d.Spec.Template.Spec.Containers {
		if strings.Contains(c.Image, "metrics-server") {
			found = true
		}
		args = append(args, c.Command...)
		args = append(args, c.Args...)
	}
	if !found {
		return MetricsServer{}, false
	}
	insecure := slices.Contains(args, "--kubelet-insecure-tls") || flagValue(args, "kubelet-insecure-tls") == "true"
	return MetricsServer{Name: d.Name, Namespace: d.Namespace, Ready: d.Status.ReadyReplicas > 0,
		InsecureTLS: insecure, CAFile: flagValue(args, "kubelet-certificate-authority")}, true
}

// flagValue returns the value of --name=value or --name value in args.
func flagValue(args []string, name string) string {
	for i, arg := range args {
		if v, ok := strings.CutPrefix(arg, "--"+name+"="); ok {
			return v
		}
		if arg == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// readNodeMetrics asks the metrics API for every node's metrics, as kubectl
// top nodes does.
func readNodeMetrics(ctx context.Context, cs kubernetes.Interface) *NodeMetrics {
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
	if err != nil {
		return &NodeMetrics{Err: err.Error()}
	}
	var list struct {
		Items []struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return &NodeMetrics{Err: "decode NodeMetricsList: " + err.Error()}
	}
	m := &NodeMetrics{Nodes: []string{}}
	for _, it := range list.Items {
		m.Nodes = append(m.Nodes, it.Metadata.Name)
	}
	slices.Sort(m.Nodes)
	return m
}

// readPodTrustedCAs reads the CA bundle every pod trusts.
func (s *Snapshot) readPodTrustedCAs(ctx context.Context, cs kubernetes.Interface) error {
	cm, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsForbidden(err):
		s.Notes = append(s.Notes, fmt.Sprintf("cannot read ConfigMap kube-system/kube-root-ca.crt for the shared-CA check: %v", reason(err)))
		return nil
	case err != nil:
		return fmt.Errorf("get configmap kube-system/kube-root-ca.crt: %w", err)
	}
	s.PodTrustedCAs = parseCertificates([]byte(cm.Data["ca.crt"]))
	return nil
}

// parseCertificates returns the certificates of the CERTIFICATE blocks in
// data, skipping what does not parse.
func parseCertificates(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
