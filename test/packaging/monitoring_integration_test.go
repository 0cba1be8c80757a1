package packaging

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/netns"
	"github.com/csrguard/csrguard/test/promtest"
)

// The Prometheus Operator's kinds the monitoring objects use.
var (
	serviceMonitors = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}
	prometheusRules = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "prometheusrules"}
)

// checkMonitoringPath is issue #15's acceptance, run on
// TestInstallManifestOnControlPlane's API server after install.yaml: on the
// documented paths — install.yaml plus install-monitoring.yaml, and the Helm
// chart with prometheusRelease=kube-prometheus-stack — the objects a user
// applies are picked by kube-prometheus-stack's default selectors, and
// csrguard scraped as their ServiceMonitor makes the Prometheus Operator
// scrape it (job from jobLabel, else the Service name; namespace of the
// Service) raises the incident's alerts from their PrometheusRule, with job,
// namespace and severity labels that route.
func checkMonitoringPath(t *testing.T, cp *controlplane.ControlPlane, admin kubernetes.Interface, bin string, installObjs []*unstructured.Unstructured, pool *netns.Pool) {
	promtool := promtest.Promtool(t)
	ctx := controlplane.Deadline(t, time.Minute)
	dyn, err := dynamic.NewForConfig(cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	createMonitoringCRDs(t, ctx, dyn)
	for _, o := range decodeAll(t, readFile(t, monitoringFile)) {
		gvr := map[string]schema.GroupVersionResource{"ServiceMonitor": serviceMonitors, "PrometheusRule": prometheusRules,
			"ConfigMap": {Version: "v1", Resource: "configmaps"}}[o.GetKind()]
		controlplane.Eventually(t, ctx, "apply "+o.GetKind()+" "+o.GetName(), func() bool {
			_, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "user", Force: true})
			return err == nil // the CRDs take a moment to be served
		})
	}

	// The incident, seen by csrguard: kubelets without serving certificates
	// while nothing approves (csrguard in dry-run).
	var d appsv1.Deployment
	convert(t, find(t, installObjs, "Deployment", releaseNamespace, "csrguard"), &d)
	p, metricsURL, _, _ := startAsServiceAccount(t, ctx, cp, admin, bin, &d, "--probe-interval=1s", "--mode=dry-run")
	// Names of their own: the next subtest starts talos-cp-1 and talos-worker-1.
	nodes := []string{"talos-cp-2", "talos-worker-2"}
	startTalosKubelets(t, ctx, cp, pool, nodes...)
	var exposition string
	var at time.Time
	controlplane.Eventually(t, ctx, "every kubelet reported without a serving certificate, its CSR pending", func() bool {
		fams := scrape(ctx, metricsURL)
		for _, n := range nodes {
			if gauge(fams, "csrguard_kubelet_probe_result", "node", n, "result", "no-serving-certificate") != 1 ||
				gauge(fams, "csrguard_node_pending_csrs", "node", n) != 1 {
				return false
			}
		}
		at, exposition = time.Now(), getText(ctx, metricsURL)
		return exposition != ""
	})
	if p.Exited() {
		t.Fatalf("csrguard exited: %v", p.Err())
	}

	chart := render(t, "--api-versions", "monitoring.coreos.com/v1", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "prometheusRule.enabled=true", "--set", "prometheusRelease="+kubePrometheusStack)
	for _, path := range []struct {
		name string
		objs []*unstructured.Unstructured
	}{
		// What the API server holds after the user applied both files.
		{"install_yaml", readBack(t, ctx, dyn)},
		{"helm_chart", decodeAll(t, chart)},
	} {
		t.Run(path.name, func(t *testing.T) {
			target := scrapeTarget(t, path.objs)
			t.Logf("scrape labels as the Prometheus Operator sets them: %v", target)
			series, err := promtest.SeriesFromExposition(strings.NewReader(exposition), at)
			if err != nil {
				t.Fatal(err)
			}
			if series, err = promtest.WithLabels(series, target); err != nil {
				t.Fatal(err)
			}
			series = append(series, promtest.Series{Name: promtest.Selector("up", target), Values: "1x30"})
			rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
			b, err := sigsyaml.Marshal(find(t, path.objs, "PrometheusRule", releaseNamespace, "csrguard").Object["spec"])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(rulesFile, b, 0o600); err != nil {
				t.Fatal(err)
			}
			firing, err := promtest.Firing(ctx, promtool, t.TempDir(), []string{rulesFile}, series, 16*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			// The capture is frozen: its last sweep grows old in promtool's time.
			delete(firing, "CSRGuardProbeSweepStale")
			want := map[string][]map[string]string{}
			for _, n := range nodes {
				want["KubeletServingCertificateMissing"] = append(want["KubeletServingCertificateMissing"],
					map[string]string{"job": target["job"], "namespace": target["namespace"], "node": n, "severity": "critical"})
			}
			for _, ls := range firing {
				slices.SortFunc(ls, func(a, b map[string]string) int { return strings.Compare(a["node"], b["node"]) })
			}
			if diff := cmp.Diff(want, firing); diff != "" {
				t.Errorf("alerts firing in the incident (-want +got):\n%s", diff)
			}
		})
	}
}

// scrapeTarget returns the target labels the Prometheus Operator gives
// csrguard's series from objs: the ServiceMonitor and PrometheusRule must
// carry the release label kube-prometheus-stack's default selectors want, the
// ServiceMonitor must select the metrics Service and its port; job is the
// Service's jobLabel label, else its name, as the operator does.
func scrapeTarget(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	sm := find(t, objs, "ServiceMonitor", releaseNamespace, "csrguard")
	for _, o := range []*unstructured.Unstructured{sm, find(t, objs, "PrometheusRule", releaseNamespace, "csrguard")} {
		if got := o.GetLabels()["release"]; got != kubePrometheusStack {
			t.Fatalf("%s %s: label release=%q; kube-prometheus-stack's default selector wants %q", o.GetKind(), o.GetName(), got, kubePrometheusStack)
		}
	}
	match, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	namespaces, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	jobLabel, _, _ := unstructured.NestedString(sm.Object, "spec", "jobLabel")
	var selected []corev1.Service
	for _, o := range ofKind(objs, "Service") {
		var svc corev1.Service
		convert(t, o, &svc)
		if len(namespaces) > 0 && !slices.Contains(namespaces, svc.Namespace) {
			continue
		}
		if !selectorMatches(match, svc.Labels) {
			continue
		}
		selected = append(selected, svc)
	}
	if len(selected) != 1 || len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor selects %d Services with %d endpoints, want 1 and 1", len(selected), len(endpoints))
	}
	svc := selected[0]
	port, _ := endpoints[0].(map[string]any)["port"].(string)
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port }) {
		t.Fatalf("ServiceMonitor endpoint port %q is not a port of Service %s", port, svc.Name)
	}
	job := svc.Name
	if v, ok := svc.Labels[jobLabel]; jobLabel != "" && ok {
		job = v
	}
	return map[string]string{"job": job, "namespace": svc.Namespace, "service": svc.Name, "endpoint": port,
		"instance": "10.0.0.1:8080", "pod": "csrguard-0", "container": "csrguard"}
}

func selectorMatches(match, labels map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return len(match) > 0
}

// readBack returns the Service, ServiceMonitor and PrometheusRule as the API
// server holds them.
func readBack(t *testing.T, ctx context.Context, dyn dynamic.Interface) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, gvr := range []schema.GroupVersionResource{{Version: "v1", Resource: "services"}, serviceMonitors, prometheusRules} {
		list, err := dyn.Resource(gvr).Namespace(releaseNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			out = append(out, &list.Items[i])
		}
	}
	return out
}

// createMonitoringCRDs creates the two Prometheus Operator CRDs, schemaless:
// enough for the API server to store what users apply.
func createMonitoringCRDs(t *testing.T, ctx context.Context, dyn dynamic.Interface) {
	t.Helper()
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		plural := strings.ToLower(kind) + "s"
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": plural + ".monitoring.coreos.com"},
			"spec": map[string]any{
				"group": "monitoring.coreos.com", "scope": "Namespaced",
				"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
				"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
			},
		}}
		if _, err := dyn.Resource(crds).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", crd.GetName(), err)
		}
	}
}

// getText returns the /metrics text of url, or "" on any error.
func getText(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}
