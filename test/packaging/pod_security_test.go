package packaging

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/test/controlplane"
)

// podSecurityLevels are the Pod Security levels csrguard is documented to run
// under, each with the namespace the test installs into. restricted is what
// install.yaml's Namespace and the README's Helm recipe set; baseline is what
// Talos enforces on a namespace without labels (its default admission
// configuration), where a Helm install without the README's label lands; it
// is a second release, so that its cluster-wide objects have names of their own.
var podSecurityLevels = []struct{ level, namespace string }{
	{"restricted", releaseNamespace},
	{"baseline", "csrguard-baseline"},
}

// checkPodSecurity installs csrguard in a server-side dry run under each of
// podSecurityLevels: install.yaml as kubectl applies it in the restricted
// namespace (already created by applyManifest), the chart rendered for the
// baseline one. kubectl's dry run only warns about a Deployment whose pods
// the level refuses, so a warning fails the test, and a Pod built from the
// Deployment's template is created in a dry run too: that is what
// PodSecurity enforces. A host-network pod must be refused at each level,
// or the namespace does not enforce it and the check proves nothing.
func checkPodSecurity(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, admin kubernetes.Interface) {
	if got := readmePodSecurityLevel(t); got != podSecurityLevels[0].level {
		t.Errorf("the README's Helm recipe labels the namespace enforce=%s; the test checks %s", got, podSecurityLevels[0].level)
	}
	for _, l := range podSecurityLevels {
		t.Run(l.level, func(t *testing.T) {
			manifest := installFile
			if l.namespace != releaseNamespace {
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.namespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": l.level}}}
				if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				manifest = filepath.Join(t.TempDir(), "chart.yaml")
				out, err := runHelm(t, "template", l.namespace, chartDir, "--namespace", l.namespace)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(manifest, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ns, err := admin.CoreV1().Namespaces().Get(ctx, l.namespace, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != l.level {
				t.Fatalf("namespace %s enforces %q, want %s", l.namespace, got, l.level)
			}

			out, err := cp.Kubectl(ctx, "apply", "--server-side", "--dry-run=server", "-f", manifest)
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", filepath.Base(manifest), err, out)
			}
			// A Deployment whose pods the level refuses is stored with this warning only.
			if strings.Contains(out, "PodSecurity") {
				t.Errorf("kubectl apply --dry-run=server warned:\n%s", out)
			}
			if !strings.Contains(out, "deployment.apps/"+l.namespace+" serverside-applied (server dry run)") {
				t.Errorf("kubectl apply --dry-run=server did not apply the Deployment:\n%s", out)
			}

			var d appsv1.Deployment
			convert(t, find(t, decodeAll(t, readFile(t, manifest)), "Deployment", l.namespace, l.namespace), &d)
			if l.namespace != releaseNamespace {
				// The dry run above created nothing; a pod's ServiceAccount must exist.
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: d.Spec.Template.Spec.ServiceAccountName, Namespace: l.namespace}}
				if _, err := admin.CoreV1().ServiceAccounts(l.namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			pod := podOf(&d)
			dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
			if _, err := admin.CoreV1().Pods(l.namespace).Create(ctx, pod, dryRun); err != nil {
				t.Fatalf("the Deployment's pod is refused in namespace %s (enforce=%s): %v", l.namespace, l.level, err)
			}
			hostNet := pod.DeepCopy()
			hostNet.Spec.HostNetwork = true
			_, err = admin.CoreV1().Pods(l.namespace).Create(ctx, hostNet, dryRun)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "host namespaces (hostNetwork=true)") {
				t.Fatalf("a host-network pod was not refused by PodSecurity %s (err %v)", l.level, err)
			}
		})
	}
	t.Run("restricted_refuses_privilege_escalation", func(t *testing.T) {
		var d appsv1.Deployment
		convert(t, find(t, decodeAll(t, readFile(t, installFile)), "Deployment", releaseNamespace, "csrguard"), &d)
		weak := podOf(&d)
		weak.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		_, err := admin.CoreV1().Pods(releaseNamespace).Create(ctx, weak, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "allowPrivilegeEscalation != false") {
			t.Fatalf("a pod allowing privilege escalation was not refused by PodSecurity (err %v): the namespace does not enforce restricted", err)
		}
	})
}

// checkPodAdmitted creates the Pod a ReplicaSet of d would create in a
// server-side dry run: PodSecurity admission enforces the namespace's level on
// Pods (it only warns about Deployments).
func checkPodAdmitted(t *testing.T, ctx context.Context, admin kubernetes.Interface, d *appsv1.Deployment) {
	t.Helper()
	if _, err := admin.CoreV1().Pods(d.Namespace).Create(ctx, podOf(d), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("the Deployment's pod is refused in namespace %s: %v", d.Namespace, err)
	}
}

// podOf is the Pod a ReplicaSet of d would create.
func podOf(d *appsv1.Deployment) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-dry-run", Namespace: d.Namespace, Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
}

// readmePodSecurityLevel is the level the README's Helm recipe labels the
// namespace with.
func readmePodSecurityLevel(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^kubectl label namespace csrguard pod-security\.kubernetes\.io/enforce=(\S+)$`).FindStringSubmatch(readFile(t, repoRoot+"/README.md"))
	if m == nil {
		t.Fatal("README.md has no `kubectl label namespace csrguard pod-security.kubernetes.io/enforce=<level>` line")
	}
	return m[1]
}
