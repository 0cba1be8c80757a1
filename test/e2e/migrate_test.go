package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestMigrateFromApprover walks the README's migration from an approver that
// checks nothing: csrguard installed in dry-run beside it reports the hostile
// CSRs that approver approved (Events, metrics, doctor); csrguard is switched
// to enforce first, while doctor warns that two approvers run; the old approver
// is removed; and every kubelet rotation on the way is approved within seconds,
// the last one by csrguard, so no CSR waits for an approver in between.
func TestMigrateFromApprover(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, c.cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}

	// Before: the old approver runs alone. The harness runs no pods, so each
	// approver runs here and a Deployment with a ready replica stands for it,
	// which is how doctor finds approvers in a cluster.
	stopOld := approveEverything(ctx, t, c.cp.AdminConfig())
	c.runningDeployment(ctx, servingcsr.ApproverAlex1989hu, servingcsr.ApproverAlex1989hu, "ghcr.io/alex1989hu/kubelet-serving-cert-approver:0.9.1")
	worker := c.addKubelet(ctx, "worker-1", kubelet.Debian)
	cert, err := worker.WaitForCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	attackerIP := c.pool.Next()
	attacker := c.nodeClient("attacker")
	c.registerNode(ctx, attacker, "attacker", kubelet.Addresses("attacker", attackerIP))
	hostile := map[string]policy.Reason{}
	fileHostile := func(name string, reason policy.Reason, opts ...csrtest.Option) {
		opts = append(append([]csrtest.Option{csrtest.Node("attacker"), csrtest.IPAddresses(attackerIP.String())}, opts...), csrtest.Name(name))
		c.createCSR(ctx, attacker, csrtest.New(t, opts...))
		hostile[name] = reason
	}
	fileHostile("hostile-api-name", policy.ReservedName, csrtest.DNSNames("kubernetes.default.svc"))
	fileHostile("hostile-metadata-ip", policy.ReservedAddress, csrtest.IPAddresses("169.254.169.254"))
	controlplane.Eventually(t, ctx, "the old approver to approve the hostile CSRs", func() bool {
		return c.state(ctx, "hostile-api-name") != "Pending" && c.state(ctx, "hostile-metadata-ip") != "Pending"
	})

	// 1. csrguard in dry-run beside it: it judges what the old approver already
	// approved, and what it approves from now on, and writes nothing.
	c.runningDeployment(ctx, guardNamespace, "csrguard", "ghcr.io/csrguard/csrguard:v0.1.0", "controller", "--mode=dry-run")
	dryRun := c.startCSRGuard(ctx, "csrguard-dry-run", true, "--mode=dry-run")
	// (A request the signer refuses, such as one for system:masters, ends Failed, not issued.)
	fileHostile("hostile-ten-years", policy.ExpirationTooLong, csrtest.ExpirationSeconds(10*365*24*3600))
	for name := range hostile {
		controlplane.Eventually(t, ctx, name+" approved by the old approver, with csrguard's WouldDeny Event", func() bool {
			got, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			return err == nil && servingcsr.ApprovedByOther(got) && c.hasEvent(ctx, name, servingcsr.EventWouldDeny)
		})
	}
	m := dryRun.scrape(ctx)
	for _, reason := range []policy.Reason{policy.ReservedName, policy.ReservedAddress, policy.ExpirationTooLong} {
		if got := m.value("csrguard_decisions_total", "verdict", "deny", "mode", "dry-run", "reason", string(reason)); got != 1 {
			t.Errorf("csrguard_decisions_total{verdict=deny,mode=dry-run,reason=%s} = %v, want 1", reason, got)
		}
	}
	findings := doctor(ctx, t, kubeconfig)
	wouldDeny := findings["approved-csrs-csrguard-would-deny"]
	for _, want := range []string{
		"Approved by kubelet-serving-cert-approver but csrguard would deny: 3 kubelet-serving CSRs",
		"reasons: ExpirationTooLong (1), ReservedAddress (1), ReservedName (1)",
		"hostile-api-name (attacker): approved", "hostile-metadata-ip (attacker): approved", "hostile-ten-years (attacker): approved",
	} {
		if !strings.Contains(wouldDeny, want) {
			t.Errorf("doctor's comparison lacks %q:\n%s", want, wouldDeny)
		}
	}
	if _, ok := findings["several-approvers"]; ok {
		t.Error("doctor warns of two approvers while csrguard approves nothing (dry-run)")
	}

	// 2. Switch csrguard to enforce first, as a rollout does: the new replica
	// is up before the dry-run one stops. Both approve now, and doctor says so.
	c.setDeploymentArgs(ctx, guardNamespace, "csrguard", "controller", "--mode=enforce")
	c.startCSRGuard(ctx, "csrguard", true)
	if err := dryRun.Stop(); err != nil {
		t.Logf("stop the dry-run csrguard: %v", err)
	}
	findings = doctor(ctx, t, kubeconfig)
	for _, want := range []string{"2 approvers approve kubelet-serving CSRs", "Stop kubelet-serving-cert-approver"} {
		if !strings.Contains(findings["several-approvers"], want) {
			t.Errorf("doctor's several-approvers finding lacks %q:\n%s", want, findings["several-approvers"])
		}
	}
	if err := worker.Rotate(ctx); err != nil {
		t.Fatalf("rotation while both approvers run: %v", err)
	}

	// 3. Then remove the old approver. csrguard alone approves the next
	// rotation and denies what the old one let through.
	stopOld()
	if err := c.admin.AppsV1().Deployments(servingcsr.ApproverAlex1989hu).Delete(ctx, servingcsr.ApproverAlex1989hu, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := worker.Current()
	if err := worker.Rotate(ctx); err != nil {
		t.Fatalf("rotation after the old approver is gone: %v", err)
	}
	if after := worker.Current(); after == nil || after.Equal(before) || after.Equal(cert) {
		t.Fatal("the kubelet serves no new certificate after its rotation")
	}
	fileHostile("hostile-after", policy.ReservedName, csrtest.DNSNames("kubernetes.default.svc"))
	controlplane.Eventually(t, ctx, "csrguard to deny hostile-after", func() bool { return c.state(ctx, "hostile-after") == "Denied" })

	// The kubelet's three CSRs were each approved within seconds of being
	// filed, the last by csrguard: there was no window without an approver.
	// A forced rotation runs beside the certificate manager's own loop, so a
	// CSR of two in flight may be denied as Superseded: the kubelet waited for
	// the other. The rest are the three the kubelet was given certificates by.
	csrs := slices.DeleteFunc(c.csrsOf(ctx, "worker-1"), func(csr certificatesv1.CertificateSigningRequest) bool {
		return servingcsr.StateOf(&csr) == servingcsr.Denied && c.denyReason(ctx, csr.Name) == servingcsr.SupersededReason
	})
	if len(csrs) != 3 {
		t.Fatalf("worker-1 filed %d CSRs, want 3 (first certificate, two rotations)", len(csrs))
	}
	slices.SortFunc(csrs, func(a, b certificatesv1.CertificateSigningRequest) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	for i, csr := range csrs {
		approvedAt := servingcsr.ApprovedAt(&csr)
		// Both times are whole seconds: allow for the rounding.
		if st := servingcsr.StateOf(&csr); st != servingcsr.Issued || approvedAt.Sub(csr.CreationTimestamp.Time) > 3*time.Second {
			t.Errorf("worker-1's CSR %s: %s, approved %v after it was filed; want issued within seconds", csr.Name, st, approvedAt.Sub(csr.CreationTimestamp.Time))
		}
		if last := i == len(csrs)-1; last && servingcsr.ApprovedByOther(&csr) {
			t.Errorf("the rotation after the switch (%s) was not approved by csrguard: %+v", csr.Name, csr.Status.Conditions)
		}
	}
}

// approveEverything runs the stand-in for the approver being replaced: an
// approver with every check taken out, with its own client. It approves every
// pending kubelet-serving CSR it lists, with the reason kubelet-serving-cert-
// approver writes. The returned function stops it and returns once it has.
func approveEverything(ctx context.Context, t *testing.T, admin *rest.Config) (stop func()) {
	cfg := rest.CopyConfig(admin)
	cfg.UserAgent = "approve-everything"
	cs := mustClient(t, cfg)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: "spec.signerName=" + certificatesv1.KubeletServingSignerName})
			if err != nil {
				return false, nil // the next round retries
			}
			for i := range list.Items {
				csr := &list.Items[i]
				if servingcsr.StateOf(csr) != servingcsr.Pending {
					continue
				}
				csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
					Reason: "AutoApproved", Message: "approve-everything: approved without a check",
				})
				// A conflict means csrguard decided first: nothing to do.
				_, _ = cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: "approve-everything"})
			}
			return false, nil
		})
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// runningDeployment creates a Deployment of image with args and writes the
// status of one ready replica: the harness runs no kube-controller-manager
// deployment controller to change it, nor pods.
func (c *cluster) runningDeployment(ctx context.Context, namespace, name, image string, args ...string) {
	c.t.Helper()
	if namespace != guardNamespace && namespace != metav1.NamespaceDefault {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
		if _, err := c.admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			c.t.Fatalf("create namespace %s: %v", namespace, err)
		}
	}
	labels := map[string]string{"app.kubernetes.io/name": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image, Args: args}}},
			},
		},
	}
	d, err := c.admin.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create deployment %s/%s: %v", namespace, name, err)
	}
	d.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1}
	if _, err := c.admin.AppsV1().Deployments(namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("deployment %s/%s status: %v", namespace, name, err)
	}
}

// setDeploymentArgs changes the args of a runningDeployment, as an upgrade of
// its chart or manifest would.
func (c *cluster) setDeploymentArgs(ctx context.Context, namespace, name string, args ...string) {
	c.t.Helper()
	d, err := c.admin.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Args = args
	if _, err := c.admin.AppsV1().Deployments(namespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// doctor runs `csrguard doctor -o json` without probing and returns each
// finding's title and evidence, one per line, by ID.
func doctor(ctx context.Context, t *testing.T, kubeconfig string) map[string]string {
	t.Helper()
	out, code := runCLI(t, ctx, "doctor", "-o", "json", "--probe=false", "--kubeconfig="+kubeconfig)
	var report struct {
		Findings []struct {
			ID       string   `json:"id"`
			Title    string   `json:"title"`
			Evidence []string `json:"evidence"`
			Fix      []string `json:"fix"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("doctor -o json (exit %d): %v\n%s", code, err, out)
	}
	findings := map[string]string{}
	for _, f := range report.Findings {
		findings[f.ID] = fmt.Sprintf("%s\n%s\n%s", f.Title, strings.Join(f.Evidence, "\n"), strings.Join(f.Fix, "\n"))
	}
	return findings
}
