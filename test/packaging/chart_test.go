package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/test/promtest"
)

// allFeatures is a values file that turns every optional feature on.
const allFeatures = "testdata/all-features.yaml"

func TestHelmLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "default_values"},
		{name: "all_features", args: []string{"--values", allFeatures}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, tc.args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint did not report success:\n%s", out)
			}
		})
	}
}

// TestTemplateDefault renders the chart as install.yaml does and checks what
// an operator gets without any values.
func TestTemplateDefault(t *testing.T) {
	objs := decodeAll(t, render(t))
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(kinds)
	want := []string{
		"ClusterRole /csrguard",
		"ClusterRoleBinding /csrguard",
		"Deployment csrguard/csrguard",
		"PodDisruptionBudget csrguard/csrguard",
		"Role csrguard/csrguard-leader-election",
		"Role csrguard/csrguard-records",
		"Role default/csrguard",
		"Role kube-public/csrguard-cluster-info",
		"RoleBinding csrguard/csrguard-leader-election",
		"RoleBinding csrguard/csrguard-records",
		"RoleBinding default/csrguard",
		"RoleBinding kube-public/csrguard-cluster-info",
		"Service csrguard/csrguard-metrics",
		"ServiceAccount csrguard/csrguard",
	}
	if diff := cmp.Diff(kinds, want); diff != "" {
		t.Fatalf("rendered objects (-got +want):\n%s", diff)
	}

	var d appsv1.Deployment
	convert(t, find(t, objs, "Deployment", releaseNamespace, "csrguard"), &d)
	if got := ptr.Deref(d.Spec.Replicas, 0); got != 2 {
		t.Errorf("replicas = %d, want 2", got)
	}
	pod := d.Spec.Template.Spec
	c := container(t, &d)
	if want := "ghcr.io/csrguard/csrguard:" + appVersion(t); c.Image != want {
		t.Errorf("image = %q, want %q (pinned to the chart's appVersion)", c.Image, want)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy = %q, want IfNotPresent", c.ImagePullPolicy)
	}
	for _, arg := range []string{
		"--namespace=$(POD_NAMESPACE)", "--leader-elect=true", "--leader-election-id=csrguard",
		"--log-format=json", "--mode=enforce", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args lack %s: %q", arg, c.Args)
		}
	}
	if c.Args[0] != "controller" {
		t.Errorf("first arg = %q, want the controller subcommand", c.Args[0])
	}
	if !hasFieldEnv(c, "POD_NAMESPACE", "metadata.namespace") {
		t.Errorf("no POD_NAMESPACE from the downward API: %+v", c.Env)
	}
	checkProbe(t, "liveness", c.LivenessProbe, "/healthz")
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz")
	wantPorts := []corev1.ContainerPort{
		{Name: "metrics", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "health", ContainerPort: 8081, Protocol: corev1.ProtocolTCP},
	}
	if diff := cmp.Diff(c.Ports, wantPorts); diff != "" {
		t.Errorf("ports (-got +want):\n%s", diff)
	}
	wantResources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("48Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	if !equalResources(c.Resources, wantResources) {
		t.Errorf("resources = %+v, want %+v", c.Resources, wantResources)
	}
	if pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	if pod.ServiceAccountName != "csrguard" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	if pod.HostNetwork {
		t.Error("hostNetwork is on by default")
	}
	wantTolerations := []corev1.Toleration{
		{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.cloudprovider.kubernetes.io/uninitialized", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	if diff := cmp.Diff(pod.Tolerations, wantTolerations); diff != "" {
		t.Errorf("tolerations (-got +want):\n%s", diff)
	}
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil ||
		len(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		len(pod.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Fatalf("want one preferred pod anti-affinity term, got %+v", pod.Affinity)
	}
	term := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.TopologyKey != "kubernetes.io/hostname" || !cmp.Equal(term.LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("anti-affinity term = %+v, want hostname spreading of the controller's own pods", term)
	}
	// Only control-plane nodes: a compromised worker must not read a token that may approve
	// serving certificates.
	wantNodeAffinity := &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
		{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.NodeSelectorOpExists}}},
		{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "node-role.kubernetes.io/master", Operator: corev1.NodeSelectorOpExists}}},
	}}}
	if diff := cmp.Diff(pod.Affinity.NodeAffinity, wantNodeAffinity); diff != "" {
		t.Errorf("node affinity (-got +want):\n%s", diff)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
	}) {
		t.Errorf("no GOMEMLIMIT from the memory limit: %+v", c.Env)
	}
	var anywhere appsv1.Deployment
	convert(t, find(t, decodeAll(t, render(t, "--set", "placement=any")), "Deployment", releaseNamespace, "csrguard"), &anywhere)
	if a := anywhere.Spec.Template.Spec.Affinity; a == nil || a.NodeAffinity != nil || a.PodAntiAffinity == nil {
		t.Errorf("placement=any: affinity %+v, want the pod anti-affinity only", a)
	}

	var pdb policyv1.PodDisruptionBudget
	convert(t, find(t, objs, "PodDisruptionBudget", releaseNamespace, "csrguard"), &pdb)
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB = %+v, want maxUnavailable 1", pdb.Spec)
	}
	if !cmp.Equal(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("PDB selects %v, the Deployment %v", pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
	}

	var svc corev1.Service
	convert(t, find(t, objs, "Service", releaseNamespace, "csrguard-metrics"), &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort != intstr.FromString("metrics") {
		t.Errorf("metrics Service ports = %+v", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selects %s=%s, which the pods do not carry", k, v)
		}
	}
}

// TestTemplateAllFeatures renders every optional object and every policy
// knob.
func TestTemplateAllFeatures(t *testing.T) {
	objs := decodeAll(t, render(t, "--values", allFeatures, "--api-versions", "monitoring.coreos.com/v1"))

	var d appsv1.Deployment
	convert(t, find(t, objs, "Deployment", releaseNamespace, "csrguard"), &d)
	c := container(t, &d)
	if want := "ghcr.io/csrguard/csrguard@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; c.Image != want {
		t.Errorf("image = %q, want the digest %q", c.Image, want)
	}
	for _, arg := range []string{
		"--mode=no-deny",
		"--allowed-node-cidrs=10.0.0.0/8,fd00::/8",
		`--dns-name-regex=^[a-z0-9-]+\.nodes\.example\.com$`,
		"--reserved-names=api.example.com,vip.example.com",
		"--reserved-cidrs=10.0.0.5/32,10.0.1.0/24",
		"--apiserver-addresses=10.0.0.5",
		"--service-cidrs=10.96.0.0/12,fd10::/108",
		"--max-expiration=720h", "--max-sans=8", "--cluster-domain=k8s.example.com", "--address-settle-time=2m",
		"--node-approval-limit=4", "--node-approval-window=30m", "--breaker-max-approvals=500", "--breaker-window=5m",
		"--workers=8", "--hold-retry=10s", "--discovery-interval=5m", "--kube-api-qps=50", "--kube-api-burst=100",
		"--leader-election-id=csrguard-leader", "--leader-election-lease-duration=30s",
		"--leader-election-renew-deadline=20s", "--leader-election-retry-period=4s",
		"--probe-interval=1m", "--probe-timeout=3s", "--probe-concurrency=8",
		"--kubelet-ca-file=/etc/csrguard/kubelet-ca/ca.crt",
		"--log-format=text", "--verbosity=2", "--max-sans=6",
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args lack %s: %q", arg, c.Args)
		}
	}
	vols := d.Spec.Template.Spec.Volumes
	if len(vols) != 1 || vols[0].ConfigMap == nil || vols[0].ConfigMap.Name != "kube-root-ca.crt" {
		t.Errorf("want the kubelet CA ConfigMap volume, got %+v", vols)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/csrguard/kubelet-ca" || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("want the kubelet CA mounted read-only, got %+v", c.VolumeMounts)
	}
	if a := d.Spec.Template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("podAntiAffinity hard: want a required term, got %+v", a)
	}
	// The leader-election Role follows the Lease name.
	var role rbacv1.Role
	convert(t, find(t, objs, "Role", releaseNamespace, "csrguard-leader-election"), &role)
	if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Equal(r.ResourceNames, []string{"csrguard-leader"}) }) {
		t.Errorf("leader-election Role does not name Lease csrguard-leader: %+v", role.Rules)
	}

	sm := find(t, objs, "ServiceMonitor", releaseNamespace, "csrguard")
	if sm.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels = %v, want the extra label release", sm.GetLabels())
	}
	endpoints := nested[[]any](t, sm.Object, "spec", "endpoints")
	ep := endpoints[0].(map[string]any)
	if ep["port"] != "metrics" || ep["interval"] != "30s" || ep["scrapeTimeout"] != "5s" || ep["metricRelabelings"] == nil {
		t.Errorf("ServiceMonitor endpoint = %v", ep)
	}
	if got := nested[string](t, sm.Object, "spec", "jobLabel"); got != "app.kubernetes.io/name" {
		t.Errorf("ServiceMonitor jobLabel = %q: the alerts select job=\"csrguard\"", got)
	}

	pr := find(t, objs, "PrometheusRule", releaseNamespace, "csrguard")
	if pr.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule labels = %v, want the extra label release", pr.GetLabels())
	}
	// The file's rules, but with the runbooks of the chart's release (the
	// file points at main) and selectors scoped to the release namespace.
	rulesText := strings.ReplaceAll(readFile(t, repoRoot+"/deploy/prometheus/csrguard.rules.yaml"), "/blob/main/docs/runbooks/", "/blob/"+appVersion(t)+"/docs/runbooks/")
	rulesText = strings.ReplaceAll(rulesText, `job="csrguard"`, `job="csrguard", namespace="`+releaseNamespace+`"`)
	var rulesFile map[string]any
	if err := yaml.Unmarshal([]byte(rulesText), &rulesFile); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pr.Object["spec"], any(rulesFile)); diff != "" {
		t.Errorf("PrometheusRule spec differs from deploy/prometheus/csrguard.rules.yaml with the release's runbooks (-chart +file):\n%s", diff)
	}

	cm := find(t, objs, "ConfigMap", "monitoring", "csrguard-dashboard")
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetLabels()["example.com/dashboards"] != "csrguard" {
		t.Errorf("dashboard ConfigMap labels = %v, want grafana_dashboard: \"1\" and the extra label", cm.GetLabels())
	}
	if cm.GetAnnotations()["k8s-sidecar-target-directory"] == "" {
		t.Errorf("dashboard ConfigMap annotations = %v", cm.GetAnnotations())
	}
	dashboard, err := os.ReadFile(repoRoot + "/deploy/grafana/csrguard-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := nested[string](t, cm.Object, "data", "csrguard-dashboard.json"); got != strings.TrimRight(string(dashboard), "\n") {
		t.Error("dashboard ConfigMap does not hold deploy/grafana/csrguard-dashboard.json verbatim")
	}
}

// TestPrometheusRuleJob renames the job the alerts select.
func TestPrometheusRuleJob(t *testing.T) {
	out := render(t, "--api-versions", "monitoring.coreos.com/v1", "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.job=kubelet-certs")
	pr := find(t, decodeAll(t, out), "PrometheusRule", releaseNamespace, "csrguard")
	b, err := pr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.Contains(s, `job=\"csrguard\"`) || !strings.Contains(s, `job=\"kubelet-certs\"`) {
		t.Errorf("prometheusRule.job=kubelet-certs: rules still select job=\"csrguard\" or never the new job")
	}
	// Runbooks of the release the chart installs, not of main.
	if s, tag := string(b), "/blob/"+appVersion(t)+"/docs/runbooks/"; strings.Contains(s, "/blob/main/") || !strings.Contains(s, tag) {
		t.Errorf("runbook URLs do not all point at %s", tag)
	}
}

// TestPrometheusRuleValues: every threshold the rules file marks "# <name>"
// is the chart value alerts.<name>, and cluster labels the scraped series
// (ServiceMonitor) and scopes the alerts; promtool accepts the result.
func TestPrometheusRuleValues(t *testing.T) {
	rules := readFile(t, repoRoot+"/deploy/prometheus/csrguard.rules.yaml")
	values := readYAML(t, chartDir+"/values.yaml")[0]["alerts"].(map[string]any)
	marked := map[string]bool{}
	for _, m := range regexp.MustCompile(`[-+.e0-9]+  # ([A-Za-z]+)\n`).FindAllStringSubmatch(rules, -1) {
		marked[m[1]] = true
	}
	for name := range values {
		if !marked[name] {
			t.Errorf("alerts.%s: no threshold in the rules file is marked # %s", name, name)
		}
	}
	for name := range marked {
		if _, ok := values[name]; !ok {
			t.Errorf("the rules file marks # %s, which is no value alerts.%s", name, name)
		}
	}
	set := []string{"--api-versions", "monitoring.coreos.com/v1", "--set", "prometheusRule.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "cluster=eu-1", "--set", "alerts.pendingAgeSeconds=900", "--set-json", "alerts.expiryWarningLifetimeShare=0.8",
		"--set", "alerts.expiryCriticalRemainingSeconds=43200"}
	objs := decodeAll(t, render(t, set...))
	spec, err := yaml.Marshal(find(t, objs, "PrometheusRule", releaseNamespace, "csrguard").Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"> 900  # pendingAgeSeconds\n", ">= 0.8  # expiryWarningLifetimeShare\n", "< 43200  # expiryCriticalRemainingSeconds\n",
		">= 0.95  # expiryCriticalLifetimeShare\n", // a default
		`absent(up{job="csrguard", namespace="csrguard", cluster="eu-1"})`,
	} {
		if !strings.Contains(string(spec), want) {
			t.Errorf("rendered PrometheusRule lacks %q", want)
		}
	}
	if strings.Contains(string(spec), `job="csrguard"}`) {
		t.Error("a selector of the rendered PrometheusRule is not scoped to the release's namespace and cluster")
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtest.Promtool(t), "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the rendered PrometheusRule: %v\n%s", err, out)
	}
	sm := find(t, objs, "ServiceMonitor", releaseNamespace, "csrguard")
	ep := nested[[]any](t, sm.Object, "spec", "endpoints")[0].(map[string]any)
	if got, want := ep["relabelings"], []any{map[string]any{"targetLabel": "cluster", "replacement": "eu-1"}}; !cmp.Equal(got, want) {
		t.Errorf("ServiceMonitor relabelings = %v, want %v", got, want)
	}
}

// TestPrometheusOperatorObjects: the ServiceMonitor and the PrometheusRule
// are rendered only where the API server serves monitoring.coreos.com/v1, and
// carry the release label kube-prometheus-stack's default selectors want,
// from the one value prometheusRelease.
func TestPrometheusOperatorObjects(t *testing.T) {
	enable := []string{"--set", "metrics.serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"}
	without := decodeAll(t, render(t, enable...))
	for _, o := range without {
		if k := o.GetKind(); k == "ServiceMonitor" || k == "PrometheusRule" {
			t.Errorf("%s rendered although monitoring.coreos.com/v1 is not served", k)
		}
	}
	with := decodeAll(t, render(t, append(enable, "--api-versions", "monitoring.coreos.com/v1", "--set", "prometheusRelease=kube-prometheus-stack")...))
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		o := find(t, with, kind, releaseNamespace, "csrguard")
		if got := o.GetLabels()["release"]; got != "kube-prometheus-stack" {
			t.Errorf("%s label release = %q, want kube-prometheus-stack", kind, got)
		}
	}
	unlabelled := decodeAll(t, render(t, append(enable, "--api-versions", "monitoring.coreos.com/v1")...))
	if _, ok := find(t, unlabelled, "ServiceMonitor", releaseNamespace, "csrguard").GetLabels()["release"]; ok {
		t.Error("ServiceMonitor has a release label although prometheusRelease is empty")
	}
}

// TestSchemaRejects: values.schema.json and the templates refuse values that
// would break or weaken the controller, naming the value.
func TestSchemaRejects(t *testing.T) {
	// The control case: a valid --set renders, so a rejection below is the
	// value's doing, not a broken chart.
	if out := render(t, "--set", "policy.mode=dry-run"); !strings.Contains(out, "--mode=dry-run") {
		t.Fatal("policy.mode=dry-run is not rendered into --mode")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"mode_yolo", []string{"--set", "policy.mode=yolo"}, "/policy/mode"},
		{"tag_latest", []string{"--set", "image.tag=latest"}, "/image/tag"},
		{"pull_always", []string{"--set", "image.pullPolicy=Always"}, "/image/pullPolicy"},
		{"digest_malformed", []string{"--set", "image.digest=sha256:xyz"}, "/image/digest"},
		{"no_replicas", []string{"--set", "replicaCount=0"}, "/replicaCount"},
		{"duration_unit", []string{"--set", "policy.maxExpiration=1y"}, "/policy/maxExpiration"},
		{"negative_limit", []string{"--set", "policy.nodeApprovalLimit=-1"}, "/policy/nodeApprovalLimit"},
		{"zero_workers", []string{"--set", "controller.workers=0"}, "/controller/workers"},
		// -1 means no client-side limit (the default); other values up to 0 are typos.
		{"zero_qps", []string{"--set", "controller.kubeAPIQPS=0"}, "/controller/kubeAPIQPS"},
		{"negative_qps_not_minus_one", []string{"--set", "controller.kubeAPIQPS=-300"}, "/controller/kubeAPIQPS"},
		{"string_for_int", []string{"--set", "policy.maxSANs=many"}, "/policy/maxSANs"},
		{"cidr_with_comma", []string{"--set-json", `policy.allowedNodeCIDRs=["10.0.0.0/8,0.0.0.0/0"]`}, "/policy/allowedNodeCIDRs/0"},
		{"log_format", []string{"--set", "logging.format=xml"}, "/logging/format"},
		{"placement_workers", []string{"--set", "placement=workers"}, "/placement"},
		{"unknown_value", []string{"--set", "policy.allowEverything=true"}, "allowEverything"},
		{"unknown_top_level", []string{"--set", "replicas=3"}, "replicas"},
		// Removed (#14): a host-network pod is refused by Pod Security baseline, Talos's default.
		{"host_network", []string{"--set", "hostNetwork=true"}, "hostNetwork"},
		{"cluster_domain_dot", []string{"--set", "policy.clusterDomain=cluster.local."}, "/policy/clusterDomain"},
		{"replicas_without_leader", []string{"--set", "leaderElection.enabled=false"}, "needs leaderElection.enabled"},
		{"two_kubelet_cas", []string{"--set", "probe.kubeletCA.configMap=a", "--set", "probe.kubeletCA.secret=b"}, "not both"},
		{"release_not_a_label_value", []string{"--set", "prometheusRelease=kube prometheus"}, "/prometheusRelease"},
		{"monitor_without_service", []string{"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"}, "needs metrics.service.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace}, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded; want an error naming %q. Output starts:\n%.400s", tc.args, tc.want, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template %v: error %q does not name %q", tc.args, err, tc.want)
			}
		})
	}
	// One replica may run without leader election.
	if out := render(t, "--set", "leaderElection.enabled=false", "--set", "replicaCount=1"); !strings.Contains(out, "--leader-elect=false") {
		t.Error("a single replica without leader election is not rendered with --leader-elect=false")
	}
}

// TestDeploymentRestricted: the pod meets the restricted Pod Security
// Standard with every values file.
func TestDeploymentRestricted(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "default_values"},
		{name: "all_features", args: []string{"--values", allFeatures}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d appsv1.Deployment
			convert(t, find(t, decodeAll(t, render(t, tc.args...)), "Deployment", releaseNamespace, "csrguard"), &d)
			checkRestricted(t, &d.Spec.Template.Spec)
		})
	}
}

// checkRestricted checks a pod spec against the restricted profile, field by
// field, and the user the image runs as.
func checkRestricted(t *testing.T, pod *corev1.PodSpec) {
	t.Helper()
	wantPod := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65532),
		RunAsGroup:     ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if diff := cmp.Diff(pod.SecurityContext, wantPod); diff != "" {
		t.Errorf("pod securityContext (-got +want):\n%s", diff)
	}
	if len(pod.InitContainers) != 0 || len(pod.EphemeralContainers) != 0 || len(pod.Containers) != 1 {
		t.Fatalf("want exactly one container, got %d (+%d init)", len(pod.Containers), len(pod.InitContainers))
	}
	wantContainer := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		RunAsGroup:               ptr.To[int64](65532),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if diff := cmp.Diff(pod.Containers[0].SecurityContext, wantContainer); diff != "" {
		t.Errorf("container securityContext (-got +want):\n%s", diff)
	}
	if pod.HostPID || pod.HostIPC || pod.HostNetwork {
		t.Error("pod shares a host namespace")
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
}

// TestRBACRules: the chart grants exactly what `csrguard controller` calls.
func TestRBACRules(t *testing.T) {
	objs := decodeAll(t, render(t))
	approve := rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{"kubernetes.io/kubelet-serving"}, Verbs: []string{"approve"}}
	for _, tc := range []struct {
		kind, namespace, name string
		want                  []rbacv1.PolicyRule
	}{
		{"ClusterRole", "", "csrguard", []rbacv1.PolicyRule{
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
			approve,
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"servicecidrs"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
		}},
		{"Role", releaseNamespace, "csrguard-records", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: append([]string{history.IdentityConfigMap}, history.ClaimConfigMaps()...), Verbs: []string{"get", "update"}},
		}},
		{"Role", "kube-public", "csrguard-cluster-info", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"cluster-info"}, Verbs: []string{"get"}},
		}},
		{"Role", "default", "csrguard", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, ResourceNames: []string{"kubernetes"}, Verbs: []string{"get"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		}},
		{"Role", releaseNamespace, "csrguard-leader-election", []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"csrguard"}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		}},
	} {
		t.Run(tc.kind+"_"+tc.namespace+"_"+tc.name, func(t *testing.T) {
			var rules []rbacv1.PolicyRule
			if tc.kind == "ClusterRole" {
				var cr rbacv1.ClusterRole
				convert(t, find(t, objs, tc.kind, tc.namespace, tc.name), &cr)
				if cr.AggregationRule != nil {
					t.Error("ClusterRole aggregates other roles")
				}
				rules = cr.Rules
			} else {
				var r rbacv1.Role
				convert(t, find(t, objs, tc.kind, tc.namespace, tc.name), &r)
				rules = r.Rules
			}
			if diff := cmp.Diff(rules, tc.want); diff != "" {
				t.Errorf("rules (-got +want):\n%s", diff)
			}
		})
	}

	// Nothing else grants anything, and every grant goes to the chart's
	// ServiceAccount only.
	if n := len(ofKind(objs, "ClusterRole")) + len(ofKind(objs, "Role")); n != 5 {
		t.Errorf("want 5 roles, the chart renders %d", n)
	}
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: "csrguard", Namespace: releaseNamespace}
	for _, b := range []struct{ kind, namespace, name, roleKind string }{
		{"ClusterRoleBinding", "", "csrguard", "ClusterRole"},
		{"RoleBinding", "default", "csrguard", "Role"},
		{"RoleBinding", releaseNamespace, "csrguard-leader-election", "Role"},
		{"RoleBinding", releaseNamespace, "csrguard-records", "Role"},
		{"RoleBinding", "kube-public", "csrguard-cluster-info", "Role"},
	} {
		var subjects []rbacv1.Subject
		var ref rbacv1.RoleRef
		if b.kind == "ClusterRoleBinding" {
			var crb rbacv1.ClusterRoleBinding
			convert(t, find(t, objs, b.kind, b.namespace, b.name), &crb)
			subjects, ref = crb.Subjects, crb.RoleRef
		} else {
			var rb rbacv1.RoleBinding
			convert(t, find(t, objs, b.kind, b.namespace, b.name), &rb)
			subjects, ref = rb.Subjects, rb.RoleRef
		}
		if diff := cmp.Diff(subjects, []rbacv1.Subject{sa}); diff != "" {
			t.Errorf("%s %s/%s subjects (-got +want):\n%s", b.kind, b.namespace, b.name, diff)
		}
		if want := (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: b.roleKind, Name: b.name}); ref != want {
			t.Errorf("%s %s/%s roleRef = %+v, want %+v", b.kind, b.namespace, b.name, ref, want)
		}
	}
	if n := len(ofKind(objs, "ClusterRoleBinding")) + len(ofKind(objs, "RoleBinding")); n != 5 {
		t.Errorf("want 5 bindings, the chart renders %d", n)
	}
}

// TestChartFilesInSync: the chart's copies of the Prometheus rules and the
// Grafana dashboard are byte-identical to their sources (make sync-chart).
func TestChartFilesInSync(t *testing.T) {
	for _, f := range []struct{ source, copy string }{
		{repoRoot + "/deploy/prometheus/csrguard.rules.yaml", chartDir + "/files/csrguard.rules.yaml"},
		{repoRoot + "/deploy/grafana/csrguard-dashboard.json", chartDir + "/files/csrguard-dashboard.json"},
	} {
		src, err := os.ReadFile(f.source)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := os.ReadFile(f.copy)
		if err != nil {
			t.Fatalf("%v: run make sync-chart", err)
		}
		if string(src) != string(cp) {
			t.Errorf("%s differs from %s: run make sync-chart", f.copy, f.source)
		}
	}
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "csrguard" {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container csrguard", d.Name)
	return corev1.Container{}
}

func hasFieldEnv(c corev1.Container, name, fieldPath string) bool {
	return slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == fieldPath
	})
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: want an HTTP GET of %s, got %+v", what, path, p)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("health") {
		t.Errorf("%s probe: GET %s on port %v, want %s on health (8081)", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

func equalResources(a, b corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || v.Cmp(w) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Requests, b.Requests) && eq(a.Limits, b.Limits)
}

// nested returns the value at path in obj, failing t if it is absent or of
// another type.
func nested[T any](t *testing.T, obj map[string]any, path ...string) T {
	t.Helper()
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %v is not an object", path, cur)
		}
		cur = m[p]
	}
	v, ok := cur.(T)
	if !ok {
		t.Fatalf("%v: got %T %v", path, cur, cur)
	}
	return v
}
