package diagnose

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func lease(namespace, holder string, renewed time.Duration) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "csrguard"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To[int32](15),
			RenewTime:            &metav1.MicroTime{Time: now.Add(-renewed)},
		},
	}
}

func deployment(namespace, name, image string, ready int32, args ...string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image, Args: args}}}},
		},
		Status: appsv1.DeploymentStatus{ReadyReplicas: ready},
	}
}

// clusterObjects are what kube.Discover reads.
func clusterObjects() client.Reader {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.100"}}},
	}
	return crfake.NewClientBuilder().WithObjects(svc, slice).Build()
}

func fetchObjects(t *testing.T) []runtime.Object {
	t.Helper()
	nodeA := newNode("node-a", "10.0.0.10", talosOS, true)
	nodeB := newNode("node-b", "10.0.0.11", talosOS, false)
	pendingA := newCSR(t, "csr-a", "node-a", "10.0.0.10", 10*time.Minute)
	evil := *csrtest.New(t, csrtest.Node("node-b"), csrtest.Name("csr-evil"), csrtest.DNSNames("node-b", "kubernetes.default.svc"), csrtest.IPAddresses("10.0.0.11"), csrtest.CreatedAt(now.Add(-time.Minute)))
	issuedB := issuedCSR(t, "csr-b", "node-b", "10.0.0.11", 20*time.Minute, yearCert(t, "node-b", "10.0.0.11"))
	client := *csrtest.New(t, csrtest.Name("csr-client"), csrtest.SignerName(certificatesv1.KubeAPIServerClientKubeletSignerName))
	rootCA := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-root-ca.crt"},
		Data:       map[string]string{"ca.crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingCA().Raw}))},
	}
	return []runtime.Object{
		&nodeB, &nodeA, &pendingA, &evil, &issuedB, &client, rootCA,
		lease("csrguard", "csrguard-7d9f_1", 5*time.Second),
		lease("old", "csrguard-old_1", time.Hour),
		deployment("csrguard", "csrguard", "ghcr.io/csrguard/csrguard:v0.1.0", 1, "controller", "--mode=dry-run"),
		deployment("kubelet-serving-cert-approver", "kubelet-serving-cert-approver", "ghcr.io/alex1989hu/kubelet-serving-cert-approver:main", 1, "serve"),
		deployment("kube-system", "coredns", "registry.k8s.io/coredns/coredns:v1.12.0", 2),
		deployment("kube-system", "ccm", "ghcr.io/siderolabs/talos-cloud-controller-manager:v1.10.0", 0, "--controllers=cloud-node,certificatesigningrequest-approving-controller"),
	}
}

func TestFetch(t *testing.T) {
	cs := fake.NewClientset(fetchObjects(t)...)
	s, err := Fetch(context.Background(), cs, clusterObjects(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}

	var nodes, csrs []string
	for _, n := range s.Nodes {
		nodes = append(nodes, n.Name)
	}
	for _, c := range s.CSRs {
		csrs = append(csrs, c.Name)
	}
	if diff := cmp.Diff(nodes, []string{"node-a", "node-b"}); diff != "" {
		t.Errorf("nodes (-got +want):\n%s", diff)
	}
	// Sorted by creation; the client-certificate CSR is out of scope.
	if diff := cmp.Diff(csrs, []string{"csr-b", "csr-a", "csr-evil"}); diff != "" {
		t.Errorf("CSRs (-got +want):\n%s", diff)
	}

	wantApprovers := []Approver{
		{Name: "csrguard", Namespace: "csrguard", Kind: servingcsr.ApproverCSRGuard, Where: "Deployment csrguard/csrguard", Ready: true, Mode: "dry-run", Detail: "1/1 replicas ready, image ghcr.io/csrguard/csrguard:v0.1.0, --mode=dry-run"},
		{Name: "csrguard", Namespace: "csrguard", Kind: servingcsr.ApproverCSRGuard, Where: "Lease csrguard/csrguard", Ready: true, Mode: "dry-run", Detail: "leader csrguard-7d9f_1, renewed 5s ago"},
		{Name: "csrguard", Namespace: "old", Kind: servingcsr.ApproverCSRGuard, Where: "Lease old/csrguard", Detail: "leader csrguard-old_1 last renewed 1h ago (lease duration 15s): no live leader"},
		{Name: "kubelet-serving-cert-approver", Namespace: "kubelet-serving-cert-approver", Kind: servingcsr.ApproverAlex1989hu, Where: "Deployment kubelet-serving-cert-approver/kubelet-serving-cert-approver", Ready: true, Detail: "1/1 replicas ready, image ghcr.io/alex1989hu/kubelet-serving-cert-approver:main"},
		{Name: "ccm", Namespace: "kube-system", Kind: servingcsr.ApproverTalosCCM, Where: "Deployment kube-system/ccm", Detail: "0/1 replicas ready, image ghcr.io/siderolabs/talos-cloud-controller-manager:v1.10.0"},
	}
	if diff := cmp.Diff(s.Approvers, wantApprovers); diff != "" {
		t.Errorf("approvers (-got +want):\n%s", diff)
	}

	if diff := cmp.Diff(asText(s.Cluster), []string{"api 10.0.0.100", "svc 10.96.0.1/32"}); diff != "" || s.ClusterErr != "" {
		t.Errorf("cluster (-got +want):\n%s\nerror %q", diff, s.ClusterErr)
	}

	verdicts := map[string]string{}
	for name, d := range s.Decisions {
		verdicts[name] = d.Verdict.String() + " " + string(d.Reason)
	}
	if diff := cmp.Diff(verdicts, map[string]string{"csr-a": "Approve AllChecksPassed", "csr-evil": "Deny ReservedName"}); diff != "" {
		t.Errorf("decisions (-got +want):\n%s", diff)
	}

	if len(s.PodTrustedCAs) != 1 || !s.PodTrustedCAs[0].Equal(servingCA()) {
		t.Errorf("PodTrustedCAs = %v, want the serving CA", s.PodTrustedCAs)
	}
	if s.Probes != nil || s.ProbeNote == "" {
		t.Errorf("Probes = %v, ProbeNote = %q; want nil and a note", s.Probes, s.ProbeNote)
	}
	if len(s.Notes) != 0 {
		t.Errorf("Notes = %q, want none", s.Notes)
	}
	if !s.Now.Equal(now) {
		t.Errorf("Now = %v, want %v", s.Now, now)
	}

	// The whole chain: a fetched snapshot diagnoses as expected. The
	// alex1989hu approver is ready, so something approves, but not csr-a.
	want := []string{
		"critical pending-csrs",
		"warning pending-csrs-policy-would-deny",
		"warning shared-ca",
		"info allowed-node-cidrs-unset",
		"info probe-unavailable",
	}
	if diff := cmp.Diff(ids(Diagnose(s)), want); diff != "" {
		t.Errorf("Diagnose(fetched) (-got +want):\n%s", diff)
	}
}

func asText(c policy.Cluster) []string {
	out := []string{}
	for _, a := range c.APIServerAddresses {
		out = append(out, "api "+a.String())
	}
	for _, p := range c.ServiceCIDRs {
		out = append(out, "svc "+p.String())
	}
	return out
}

// TestFetchTolerates checks that forbidden optional reads become notes and
// a failed discovery an error string, while Nodes and CSRs stay required.
func TestFetchTolerates(t *testing.T) {
	forbid := func(resource string) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", errors.New("rbac"))
		}
	}
	cs := fake.NewClientset(fetchObjects(t)...)
	cs.PrependReactor("list", "leases", forbid("leases"))
	cs.PrependReactor("list", "deployments", forbid("deployments"))
	cs.PrependReactor("get", "configmaps", forbid("configmaps"))
	static := policy.Cluster{ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}
	s, err := Fetch(context.Background(), cs, crfake.NewClientBuilder().Build(), Options{Now: func() time.Time { return now }, Static: static})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"cannot list Leases to find csrguard's leader: forbidden",
		"cannot list Deployments to find approvers: forbidden",
		"cannot read ConfigMap kube-system/kube-root-ca.crt for the shared-CA check: forbidden",
	}
	if diff := cmp.Diff(s.Notes, want); diff != "" {
		t.Errorf("Notes (-got +want):\n%s", diff)
	}
	if !strings.Contains(s.ClusterErr, "default/kubernetes") {
		t.Errorf("ClusterErr = %q, want the failed Service read", s.ClusterErr)
	}
	if diff := cmp.Diff(asText(s.Cluster), []string{"svc 10.96.0.0/12"}); diff != "" {
		t.Errorf("cluster without discovery keeps the static part (-got +want):\n%s", diff)
	}
	if len(s.Approvers) != 0 || s.PodTrustedCAs != nil {
		t.Errorf("Approvers = %v, PodTrustedCAs = %v; want none", s.Approvers, s.PodTrustedCAs)
	}
	// The notes reach the finding that rests on them.
	f := findByID(Diagnose(s), IDNoApprover)
	if f == nil || !containsLine(f.Evidence, "cannot list Deployments") {
		t.Errorf("no-approver finding lacks the note: %+v", f)
	}

	cs = fake.NewClientset()
	cs.PrependReactor("list", "nodes", forbid("nodes"))
	if _, err := Fetch(context.Background(), cs, nil, Options{}); err == nil || !strings.Contains(err.Error(), "list nodes") {
		t.Errorf("Fetch with nodes forbidden: err = %v, want list nodes error", err)
	}
}

// TestFetchProbe probes real listeners: one kubelet without a serving
// certificate makes the probe usable; only unreachable kubelets make it a note.
func TestFetchProbe(t *testing.T) {
	// A kubelet without a serving certificate: every handshake fails with
	// alert 80, "tls: internal error".
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no serving certificate available for the kubelet")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	// A port nothing listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	node := func(name string, port int) *corev1.Node {
		n := newNode(name, "127.0.0.1", ubuntuOS, false)
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
		return &n
	}
	opts := Options{Probe: true, Prober: monitor.Prober{Timeout: 2 * time.Second}, Now: func() time.Time { return now }}

	var progress []int
	opts.Progress = func(done, total int) { progress = append(progress, done*10+total) }
	cs := fake.NewClientset(node("node-a", ln.Addr().(*net.TCPAddr).Port), node("node-b", closedPort))
	s, err := Fetch(context.Background(), cs, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.ProbeNote != "" || s.Probes["node-a"].State != metrics.ProbeNoServingCertificate || s.Probes["node-b"].State != metrics.ProbeRefused {
		t.Errorf("ProbeNote = %q, Probes = %v; want node-a no-serving-certificate, node-b refused", s.ProbeNote, s.Probes)
	}
	if diff := cmp.Diff(progress, []int{12, 22}); diff != "" {
		t.Errorf("progress calls (-got +want):\n%s", diff)
	}

	opts.Progress = nil
	cs = fake.NewClientset(node("node-b", closedPort))
	s, err = Fetch(context.Background(), cs, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.Probes != nil || !strings.HasPrefix(s.ProbeNote, "kubelets unreachable from here (every probe failed: 1 refused; e.g. node-b: ") {
		t.Errorf("Probes = %v, ProbeNote = %q; want nil and the unreachable note", s.Probes, s.ProbeNote)
	}
}
