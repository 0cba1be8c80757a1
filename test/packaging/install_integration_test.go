package packaging

import (
	"context"
	"io"
	"iter"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
	"github.com/csrguard/csrguard/test/netns"
)

// notApplied are the install.yaml kinds the local control plane does not
// run: it has no scheduler or kubelets for the Deployment (csrguard runs out
// of cluster instead, with the Deployment's own flags); the Prometheus
// Operator's kinds are in install-monitoring.yaml, applied by
// checkMonitoringPath once it has created their CRDs.
var notApplied = []string{"Deployment", "ServiceMonitor", "PrometheusRule"}

// serviceAccountUser is who csrguard is when it runs from install.yaml.
const serviceAccountUser = "system:serviceaccount:" + releaseNamespace + ":csrguard"

var serviceAccountGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"}

// TestInstallManifestOnControlPlane applies deploy/install.yaml to a real API
// server and shows that its ServiceAccount is enough to run csrguard — the
// kubelets get certificates, a hostile CSR is denied with Events, leader
// election, readiness and metrics work, and nothing is forbidden — and no
// more than enough: SubjectAccessReviews of what it must and must not do.
func TestInstallManifestOnControlPlane(t *testing.T) {
	objs := decodeAll(t, readFile(t, installFile))
	bin := csrguardBinary(t)
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := controlplane.Deadline(t, time.Minute)
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	applyManifest(t, ctx, cp.AdminConfig(), objs)

	var d appsv1.Deployment
	convert(t, find(t, objs, "Deployment", releaseNamespace, "csrguard"), &d)

	t.Run("pod_security", func(t *testing.T) {
		checkPodSecurity(t, controlplane.Deadline(t, time.Minute), cp, admin)
	})
	// The kubelets of both subtests share one address pool: an address is
	// its first Node's for good (csrguard's address claims).
	pool := netns.NewPool()
	t.Run("monitoring_path_alerts", func(t *testing.T) {
		checkMonitoringPath(t, cp, admin, bin, objs, pool)
	})
	t.Run("controller_runs_as_service_account", func(t *testing.T) {
		runAsServiceAccount(t, controlplane.Deadline(t, 2*time.Minute), cp, admin, bin, &d, pool)
	})
	t.Run("service_account_rights", func(t *testing.T) {
		checkServiceAccountRights(t, controlplane.Deadline(t, time.Minute), admin)
	})
	t.Run("runbook_rbac_commands", func(t *testing.T) {
		checkRunbookRBACCommands(t, controlplane.Deadline(t, time.Minute), cp)
	})
	t.Run("runbook_read_commands", func(t *testing.T) {
		checkRunbookReadCommands(t, controlplane.Deadline(t, time.Minute), cp)
	})
}

// checkRunbookReadCommands runs the runbooks' read-only kubectl commands (get
// and describe, up to a pipe or a comment) with the real kubectl against the
// installed csrguard: a field selector, label or flag kubectl refuses would
// leave a user stuck in the middle of an incident. Lines with a placeholder
// (<node>), shell quoting or a continuation are left to the reader.
func checkRunbookReadCommands(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane) {
	ran := 0
	for runbook, cmd := range runbookCommands(t, "kubectl ") {
		if strings.ContainsAny(cmd, "<'\"\\") {
			continue
		}
		cmd, _, _ = strings.Cut(cmd, "#")
		cmd, _, _ = strings.Cut(cmd, "|")
		args := strings.Fields(cmd)
		if !slices.ContainsFunc(args[:min(3, len(args))], func(a string) bool { return a == "get" || a == "describe" }) {
			continue
		}
		if out, err := cp.Kubectl(ctx, args...); err != nil {
			t.Errorf("%s: kubectl %s: %v\n%s", runbook, cmd, err, out)
		}
		ran++
	}
	if ran < 10 {
		t.Fatalf("ran %d read-only runbook commands, want at least 10: is the parsing broken?", ran)
	}
	t.Logf("ran %d read-only runbook commands", ran)
}

// runbookCommands yields, for each line of docs/runbooks that starts with
// prefix (after indentation), the runbook's file name and the rest of the line.
func runbookCommands(t *testing.T, prefix string) iter.Seq2[string, string] {
	runbooks, err := filepath.Glob(repoRoot + "/docs/runbooks/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return func(yield func(string, string) bool) {
		for _, path := range runbooks {
			for line := range strings.Lines(readFile(t, path)) {
				if cmd, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok && !yield(filepath.Base(path), cmd) {
					return
				}
			}
		}
	}
}

// checkRunbookRBACCommands runs every `kubectl auth can-i` line of the runbooks
// with the real kubectl against install.yaml's RBAC: each must answer yes (or,
// piped to grep, print what it greps for), or the runbook sends a user after a
// fault that is not there. The subresource written as a resource path must
// answer no, or this check proves nothing.
func checkRunbookRBACCommands(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane) {
	ran := 0
	for runbook, cmd := range runbookCommands(t, "kubectl auth can-i ") {
		cmd, _, _ = strings.Cut(cmd, "#")
		cmd, grep, piped := strings.Cut(cmd, "| grep ")
		out, err := cp.Kubectl(ctx, append([]string{"auth", "can-i"}, strings.Fields(cmd)...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		switch {
		case piped:
			grep = strings.TrimSpace(grep)
			if i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, grep) }); err != nil || i < 0 {
				t.Errorf("%s: kubectl auth can-i %s: no line with %q in %q (%v)", runbook, cmd, grep, out, err)
			} else {
				t.Logf("%s: kubectl auth can-i %s| grep %s: %s", runbook, cmd, grep, lines[i])
			}
		case err != nil || lines[len(lines)-1] != "yes": // after any warning
			t.Errorf("%s: kubectl auth can-i %s: %q (%v), want yes", runbook, cmd, out, err)
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no runbook has a kubectl auth can-i command")
	}
	out, _ := cp.Kubectl(ctx, "auth", "can-i", "update", "certificatesigningrequests/approval", "--as="+serviceAccountUser)
	if !strings.HasSuffix(strings.TrimSpace(out), "\nno") {
		t.Errorf("kubectl auth can-i update certificatesigningrequests/approval: %q, want no (kubectl reads approval as a name)", out)
	}
}

// applyManifest server-side applies every object but notApplied, in file
// order (the Namespace first).
func applyManifest(t *testing.T, ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(cs.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	applied := 0
	for _, o := range objs {
		if slices.Contains(notApplied, o.GetKind()) {
			continue
		}
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, o.GetName(), err)
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := r.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "csrguard-packaging-test", Force: true}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		applied++
	}
	t.Logf("applied %d objects of %s", applied, installFile)
}

// startAsServiceAccount starts csrguard out of cluster with a token of the
// chart's ServiceAccount, the Deployment's own flags and extra; it returns
// the process, its /metrics URL, its health URL and its log path.
func startAsServiceAccount(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, admin kubernetes.Interface, bin string, d *appsv1.Deployment, extra ...string) (p *controlplane.Process, metricsURL, healthURL, logPath string) {
	t.Helper()
	tr, err := admin.CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, "csrguard", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s/csrguard: %v", releaseNamespace, err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	saConfig := &rest.Config{Host: cp.URL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: cp.ClusterCAPEM}}
	if err := controlplane.WriteKubeconfig(kubeconfig, saConfig); err != nil {
		t.Fatal(err)
	}

	// The Deployment's arguments, as the kubelet would expand them, then
	// what running out of cluster needs.
	mport, hport := controlplane.FreePort(), controlplane.FreePort()
	args := []string{}
	for _, a := range container(t, d).Args {
		args = append(args, strings.ReplaceAll(a, "$(POD_NAMESPACE)", releaseNamespace))
	}
	if args[0] != "controller" {
		t.Fatalf("Deployment args start with %q, not the controller subcommand", args[0])
	}
	args = append(args,
		"--kubeconfig="+kubeconfig,
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(mport),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(hport),
	)
	args = append(args, extra...)
	for _, want := range []string{"--leader-elect=true", "--namespace=" + releaseNamespace, "--log-format=json"} {
		if !slices.Contains(args, want) {
			t.Fatalf("csrguard would run without %s: %q", want, args)
		}
	}
	logPath = filepath.Join(dir, "csrguard.log")
	p, err = controlplane.StartProcess(bin, args, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("--- csrguard log tail:\n%s", controlplane.Tail(logPath, 60))
		}
	})

	return p, "http://127.0.0.1:" + strconv.Itoa(mport) + "/metrics", "http://127.0.0.1:" + strconv.Itoa(hport), logPath
}

// startTalosKubelets starts a simulated Talos kubelet for each name, with an
// address from pool, stopped when the test ends.
func startTalosKubelets(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, pool *netns.Pool, names ...string) []*kubelet.Kubelet {
	t.Helper()
	var nodes []*kubelet.Kubelet
	for _, name := range names {
		cfg, err := cp.NodeConfig(name)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kubelet.Start(ctx, kubelet.Options{Name: name, Config: cfg, Addresses: kubelet.Addresses(name, pool.Next()), OSImage: kubelet.Talos})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Stop)
		nodes = append(nodes, k)
	}
	return nodes
}

// runAsServiceAccount runs csrguard out of cluster with a token of the
// chart's ServiceAccount and the Deployment's own flags.
func runAsServiceAccount(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, admin kubernetes.Interface, bin string, d *appsv1.Deployment, pool *netns.Pool) {
	p, metrics, health, logPath := startAsServiceAccount(t, ctx, cp, admin, bin, d, "--probe-interval=1s")

	nodes := startTalosKubelets(t, ctx, cp, pool, "talos-cp-1", "talos-worker-1")
	for _, k := range nodes {
		if _, err := k.WaitForCertificate(ctx, nil); err != nil {
			t.Fatalf("%v (csrguard exited: %v)", err, p.Exited())
		}
	}
	t.Logf("every kubelet got its serving certificate")

	controlplane.Eventually(t, ctx, "/readyz ok", func() bool { return httpGet(ctx, health+"/readyz") == http.StatusOK })

	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	lease, err := admin.CoordinationV1().Leases(releaseNamespace).Get(ctx, "csrguard", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("leader Lease: %v", err)
	}
	if holder := ptr.Deref(lease.Spec.HolderIdentity, ""); !strings.HasPrefix(holder, hostname+"_") {
		t.Errorf("Lease %s/csrguard is held by %q, want this csrguard (%s_<uuid>)", releaseNamespace, holder, hostname)
	}

	controlplane.Eventually(t, ctx, "csrguard_kubelet_probe_result ok for every node", func() bool {
		fams := scrape(ctx, metrics)
		for _, k := range nodes {
			if gauge(fams, "csrguard_kubelet_probe_result", "node", k.Name(), "result", "ok") != 1 {
				return false
			}
		}
		return true
	})

	// A denial writes the CSR's Denied condition and Events in default.
	node := nodes[0]
	nodeCfg, err := cp.NodeConfig(node.Name())
	if err != nil {
		t.Fatal(err)
	}
	nodeClient, err := kubernetes.NewForConfig(nodeCfg)
	if err != nil {
		t.Fatal(err)
	}
	hostile := csrtest.New(t, csrtest.Node(node.Name()), csrtest.Name("hostile-kubernetes-default-svc"),
		csrtest.DNSNames("kubernetes.default.svc"), csrtest.IPAddresses(node.Addresses()[0].Address))
	hostile.Spec.Username, hostile.Spec.Groups, hostile.CreationTimestamp = "", nil, metav1.Time{}
	if _, err := nodeClient.CertificatesV1().CertificateSigningRequests().Create(ctx, hostile, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create hostile CSR as %s: %v", node.Name(), err)
	}
	controlplane.Eventually(t, ctx, "the hostile CSR denied with ReservedName", func() bool {
		csr, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, hostile.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		return slices.ContainsFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool {
			return c.Type == certificatesv1.CertificateDenied && c.Reason == string(policy.ReservedName)
		})
	})
	// The denial is recorded on the CSR and on its Node, both in default.
	for _, regarding := range []corev1.ObjectReference{{Kind: "CertificateSigningRequest", Name: hostile.Name}, {Kind: "Node", Name: node.Name()}} {
		controlplane.Eventually(t, ctx, "a Denied Event about "+regarding.Kind+" "+regarding.Name+" in namespace default", func() bool {
			list, err := admin.EventsV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
				return e.Regarding.Kind == regarding.Kind && e.Regarding.Name == regarding.Name && e.Reason == "Denied" &&
					strings.Contains(e.Note, string(policy.ReservedName)) &&
					(regarding.Kind != "Node" || strings.Contains(e.Note, hostile.Name))
			})
		})
	}
	controlplane.Eventually(t, ctx, "a LeaderElection Event in namespace "+releaseNamespace, func() bool {
		list, err := admin.CoreV1().Events(releaseNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		return slices.ContainsFunc(list.Items, func(e corev1.Event) bool {
			return e.Reason == "LeaderElection" && e.InvolvedObject.Kind == "Lease"
		})
	})

	// Nothing csrguard tried was refused.
	log := readFile(t, logPath)
	if strings.Contains(strings.ToLower(log), "forbidden") {
		var lines []string
		for l := range strings.SplitSeq(log, "\n") {
			if strings.Contains(strings.ToLower(l), "forbidden") {
				lines = append(lines, l)
			}
		}
		t.Errorf("csrguard was forbidden something with the chart's RBAC:\n%s", strings.Join(lines, "\n"))
	}
	if p.Exited() {
		t.Errorf("csrguard exited: %v", p.Err())
	}
}

// sarCase is one question to the API server's authorizer about csrguard's
// ServiceAccount.
type sarCase struct {
	name    string
	attrs   authorizationv1.ResourceAttributes
	allowed bool
}

func allow(name string, a authorizationv1.ResourceAttributes) sarCase {
	return sarCase{name: name, attrs: a, allowed: true}
}

func refuse(name string, a authorizationv1.ResourceAttributes) sarCase {
	return sarCase{name: name, attrs: a}
}

type attrs = authorizationv1.ResourceAttributes

// checkServiceAccountRights asks the authorizer what the ServiceAccount may
// do: everything csrguard calls, and none of the rights that would let a
// compromised csrguard mint client certificates, read Secrets or change
// Nodes.
func checkServiceAccountRights(t *testing.T, ctx context.Context, admin kubernetes.Interface) {
	const certs, csrs = "certificates.k8s.io", "certificatesigningrequests"
	signer := func(verb, name string) attrs {
		return attrs{Group: certs, Resource: "signers", Verb: verb, Name: name}
	}
	cases := []sarCase{
		allow("approve_kubelet_serving", signer("approve", "kubernetes.io/kubelet-serving")),
		refuse("approve_kube_apiserver_client", signer("approve", "kubernetes.io/kube-apiserver-client")),
		refuse("approve_kube_apiserver_client_kubelet", signer("approve", "kubernetes.io/kube-apiserver-client-kubelet")),
		refuse("approve_legacy_unknown", signer("approve", "kubernetes.io/legacy-unknown")),
		refuse("approve_kubernetes_io_wildcard", signer("approve", "kubernetes.io/*")),
		refuse("approve_custom_signer", signer("approve", "example.com/anything")),
		refuse("sign_kubelet_serving", signer("sign", "kubernetes.io/kubelet-serving")),

		allow("list_csrs", attrs{Group: certs, Resource: csrs, Verb: "list"}),
		allow("watch_csrs", attrs{Group: certs, Resource: csrs, Verb: "watch"}),
		allow("get_csr", attrs{Group: certs, Resource: csrs, Verb: "get", Name: "csr-x"}),
		allow("update_csr_approval", attrs{Group: certs, Resource: csrs, Subresource: "approval", Verb: "update", Name: "csr-x"}),
		refuse("update_csr_status", attrs{Group: certs, Resource: csrs, Subresource: "status", Verb: "update", Name: "csr-x"}),
		refuse("create_csr", attrs{Group: certs, Resource: csrs, Verb: "create"}),
		refuse("delete_csr", attrs{Group: certs, Resource: csrs, Verb: "delete", Name: "csr-x"}),

		allow("list_nodes", attrs{Resource: "nodes", Verb: "list"}),
		allow("watch_nodes", attrs{Resource: "nodes", Verb: "watch"}),
		refuse("update_node", attrs{Resource: "nodes", Verb: "update", Name: "talos-cp-1"}),
		refuse("patch_node", attrs{Resource: "nodes", Verb: "patch", Name: "talos-cp-1"}),
		refuse("update_node_status", attrs{Resource: "nodes", Subresource: "status", Verb: "update", Name: "talos-cp-1"}),
		refuse("delete_node", attrs{Resource: "nodes", Verb: "delete", Name: "talos-cp-1"}),

		allow("list_servicecidrs", attrs{Group: "networking.k8s.io", Resource: "servicecidrs", Verb: "list"}),
		allow("get_kubernetes_service", attrs{Namespace: "default", Resource: "services", Verb: "get", Name: "kubernetes"}),
		refuse("get_other_service", attrs{Namespace: "default", Resource: "services", Verb: "get", Name: "metrics-server"}),
		refuse("list_services", attrs{Namespace: "default", Resource: "services", Verb: "list"}),
		allow("list_kubernetes_endpointslices", attrs{Namespace: "default", Group: "discovery.k8s.io", Resource: "endpointslices", Verb: "list"}),
		refuse("list_endpointslices_kube_system", attrs{Namespace: "kube-system", Group: "discovery.k8s.io", Resource: "endpointslices", Verb: "list"}),

		allow("create_events_default", attrs{Namespace: "default", Group: "events.k8s.io", Resource: "events", Verb: "create"}),
		allow("patch_events_default", attrs{Namespace: "default", Group: "events.k8s.io", Resource: "events", Verb: "patch", Name: "e"}),
		allow("create_core_events_own_namespace", attrs{Namespace: releaseNamespace, Resource: "events", Verb: "create"}),
		refuse("create_events_kube_system", attrs{Namespace: "kube-system", Group: "events.k8s.io", Resource: "events", Verb: "create"}),
		refuse("delete_events_default", attrs{Namespace: "default", Group: "events.k8s.io", Resource: "events", Verb: "delete", Name: "e"}),

		allow("get_own_lease", attrs{Namespace: releaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "get", Name: "csrguard"}),
		allow("update_own_lease", attrs{Namespace: releaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "csrguard"}),
		allow("create_lease_own_namespace", attrs{Namespace: releaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"}),
		refuse("update_other_lease", attrs{Namespace: releaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "other"}),
		refuse("update_kube_system_lease", attrs{Namespace: "kube-system", Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "kube-controller-manager"}),
		refuse("delete_own_lease", attrs{Namespace: releaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "delete", Name: "csrguard"}),

		refuse("create_serviceaccount_token", attrs{Namespace: releaseNamespace, Resource: "serviceaccounts", Subresource: "token", Verb: "create", Name: "csrguard"}),
		refuse("create_pods", attrs{Namespace: releaseNamespace, Resource: "pods", Verb: "create"}),
		refuse("get_configmaps", attrs{Namespace: releaseNamespace, Resource: "configmaps", Verb: "get", Name: "kube-root-ca.crt"}),
		allow("get_claims_record", attrs{Namespace: releaseNamespace, Resource: "configmaps", Verb: "get", Name: history.ClaimConfigMaps()[15]}),
		allow("update_identity_record", attrs{Namespace: releaseNamespace, Resource: "configmaps", Verb: "update", Name: history.IdentityConfigMap}),
		allow("create_configmap_own_namespace", attrs{Namespace: releaseNamespace, Resource: "configmaps", Verb: "create"}),
		refuse("list_configmaps_own_namespace", attrs{Namespace: releaseNamespace, Resource: "configmaps", Verb: "list"}),
		refuse("update_other_configmap", attrs{Namespace: releaseNamespace, Resource: "configmaps", Verb: "update", Name: "kube-root-ca.crt"}),
		refuse("create_configmap_kube_system", attrs{Namespace: "kube-system", Resource: "configmaps", Verb: "create"}),
		allow("get_cluster_info", attrs{Namespace: "kube-public", Resource: "configmaps", Verb: "get", Name: "cluster-info"}),
		refuse("get_other_kube_public_configmap", attrs{Namespace: "kube-public", Resource: "configmaps", Verb: "get", Name: "other"}),
		allow("list_namespaces", attrs{Resource: "namespaces", Verb: "list"}),
		allow("watch_namespaces", attrs{Resource: "namespaces", Verb: "watch"}),
		refuse("delete_namespace", attrs{Resource: "namespaces", Verb: "delete", Name: "default"}),
		refuse("bind_clusterroles", attrs{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "bind", Name: "cluster-admin"}),
		refuse("escalate_clusterroles", attrs{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "escalate", Name: "csrguard"}),
	}
	for _, ns := range []string{releaseNamespace, "default", "kube-system", ""} {
		for _, verb := range []string{"get", "list", "watch"} {
			where := ns
			if where == "" {
				where = "all_namespaces"
			}
			a := attrs{Namespace: ns, Resource: "secrets", Verb: verb}
			if verb == "get" {
				a.Name = "any"
			}
			cases = append(cases, refuse(verb+"_secrets_"+strings.ReplaceAll(where, "-", "_"), a))
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: serviceAccountUser, Groups: serviceAccountGroups, ResourceAttributes: &tc.attrs,
			}}
			got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed != tc.allowed {
				t.Errorf("%s %+v: allowed = %v, want %v (%s)", serviceAccountUser, tc.attrs, got.Status.Allowed, tc.allowed, got.Status.Reason)
			}
		})
	}
}

func httpGet(ctx context.Context, url string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// scrape parses one /metrics response; nil if it fails.
func scrape(ctx context.Context, url string) map[string]*dto.MetricFamily {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	return fams
}

// gauge returns the gauge of name with these label pairs, or -1.
func gauge(fams map[string]*dto.MetricFamily, name string, labelPairs ...string) float64 {
	mf := fams[name]
	if mf == nil {
		return -1
	}
	for _, m := range mf.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labelPairs); i += 2 {
			match = match && labels[labelPairs[i]] == labelPairs[i+1]
		}
		if match && m.Gauge != nil {
			return m.Gauge.GetValue()
		}
	}
	return -1
}
