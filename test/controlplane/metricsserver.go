package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/test/netns"
)

// metricsServerAPIService is the APIService metrics-server serves.
const metricsServerAPIService = "v1beta1.metrics.k8s.io"

// startMetricsServer runs the real metrics-server (built by hack/build-kube.sh)
// as an extension API server on netns.MetricsServer, registered the way its
// upstream manifests register it: the v1beta1.metrics.k8s.io APIService, a
// Service kube-system/metrics-server whose EndpointSlice names that address
// (there is no Pod: the harness runs the process), and the upstream RBAC for
// its user. It verifies kubelets with the kubelet-serving CA
// (--kubelet-certificate-authority, never --kubelet-insecure-tls) at their
// InternalIP, so it fails to scrape a kubelet exactly as in the incident while
// that kubelet has no certificate.
//
// The local cluster runs no container runtime, so the process is recorded as
// what an installed metrics-server is, the Deployment kube-system/metrics-server
// with the very arguments it runs with, marked ready while it runs: csrguard
// doctor reads how metrics-server verifies kubelets from there.
func (cp *ControlPlane) startMetricsServer(ctx context.Context) error {
	dir := filepath.Join(cp.Dir, "pki")
	addr := netns.MetricsServer
	port := freePort()
	clientCert, clientKey, err := cp.clientCA.issue(leaf{cn: metricsServerUser, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "metrics-server.kubeconfig")
	cfg := rest.CopyConfig(cp.admin)
	cfg.CertData, cfg.KeyData = clientCert, clientKey
	if err := WriteKubeconfig(kubeconfig, cfg); err != nil {
		return err
	}
	servingCert, servingKey, err := cp.clientCA.issue(leaf{
		cn:    "metrics-server",
		dns:   []string{"metrics-server", "metrics-server.kube-system", "metrics-server.kube-system.svc"},
		ips:   []net.IP{net.IP(addr.AsSlice())},
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return err
	}
	certFile, keyFile, err := writePair(dir, "metrics-server", servingCert, servingKey)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=" + addr.String(),
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--kubelet-certificate-authority=" + cp.files.servingCA,
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-use-node-status-port",
		"--metric-resolution=10s",
		"--kubelet-request-timeout=5s",
	}
	if err := cp.registerMetricsServer(ctx, addr.String(), port, args); err != nil {
		return err
	}
	if err := cp.spawn("metrics-server", args); err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // liveness of a process just started; nothing is sent

	if err := cp.waitHTTP(ctx, "metrics-server", "https://"+net.JoinHostPort(addr.String(), strconv.Itoa(port))+"/livez", insecure); err != nil {
		return err
	}
	cp.opts.Logf("metrics-server listening on %s:%d", addr, port)
	return cp.markMetricsServerReady(ctx)
}

// metricsServerUser is metrics-server's user name, at the API server and at kubelets.
const metricsServerUser = "metrics-server"

// registerMetricsServer creates metrics-server's RBAC, Service, EndpointSlice,
// APIService and Deployment record.
func (cp *ControlPlane) registerMetricsServer(ctx context.Context, addr string, port int, args []string) error {
	c, err := client.New(cp.AdminConfig(), client.Options{})
	if err != nil {
		return err
	}
	user := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: metricsServerUser}}
	labels := map[string]string{"k8s-app": "metrics-server"}
	objs := []client.Object{
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-server"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
				{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-server"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:metrics-server"},
			Subjects:   user,
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "metrics-server:system:auth-delegator"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
			Subjects:   user,
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "metrics-server-auth-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
			Subjects:   user,
		},
		// No selector: the aggregator (--enable-aggregator-routing) dials the
		// EndpointSlice below, whose port name matches the Service's.
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "metrics-server", Labels: labels},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(port)}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "metrics-server", Labels: map[string]string{
				discoveryv1.LabelServiceName: "metrics-server", discoveryv1.LabelManagedBy: "csrguard-local-controlplane",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		},
		// Before v1.34 the aggregator finds (and checks the availability of)
		// the Service's backend through v1 Endpoints, not EndpointSlices.
		&corev1.Endpoints{ //nolint:staticcheck // SA1019: what the aggregator of v1.33 reads
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "metrics-server", Labels: labels},
			Subsets: []corev1.EndpointSubset{{ //nolint:staticcheck // SA1019: as above
				Addresses: []corev1.EndpointAddress{{IP: addr}},
				Ports:     []corev1.EndpointPort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}},
			}},
		},
		&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": metricsServerAPIService, "labels": map[string]any{"k8s-app": "metrics-server"}},
			"spec": map[string]any{
				"service": map[string]any{"namespace": metav1.NamespaceSystem, "name": "metrics-server", "port": int64(443)},
				"group":   "metrics.k8s.io", "version": "v1beta1", "caBundle": base64.StdEncoding.EncodeToString(cp.ClusterCAPEM),
				"groupPriorityMinimum": int64(100), "versionPriority": int64(100),
			},
		}},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "metrics-server", Labels: labels,
				Annotations: map[string]string{"csrguard.dev/run-by": "the local control plane (test/controlplane): no container runtime runs it"}},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "metrics-server", Image: "registry.k8s.io/metrics-server/metrics-server:" + cp.metricsServerVersion(),
						Args: args,
					}}},
				},
			},
		},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// markMetricsServerReady waits for the aggregator to reach metrics-server and
// records the running process as the Deployment's one ready replica.
func (cp *ControlPlane) markMetricsServerReady(ctx context.Context) error {
	c, err := client.New(cp.AdminConfig(), client.Options{})
	if err != nil {
		return err
	}
	if err := cp.poll(ctx, "metrics-server", 60*time.Second, func(ctx context.Context) error {
		svc := &unstructured.Unstructured{}
		svc.SetAPIVersion("apiregistration.k8s.io/v1")
		svc.SetKind("APIService")
		if err := c.Get(ctx, client.ObjectKey{Name: metricsServerAPIService}, svc); err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(svc.Object, "status", "conditions")
		for _, cond := range conds {
			if m, ok := cond.(map[string]any); ok && m["type"] == "Available" && m["status"] == "True" {
				return nil
			}
		}
		return errors.New("APIService " + metricsServerAPIService + " not available yet")
	}); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	d, err := cs.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, "metrics-server", metav1.GetOptions{})
	if err != nil {
		return err
	}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1}
	_, err = cs.AppsV1().Deployments(metav1.NamespaceSystem).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	return err
}

// metricsServerVersion is what the metrics-server binary says it is.
func (cp *ControlPlane) metricsServerVersion() string {
	out, err := exec.Command(filepath.Join(cp.opts.BinDir, "metrics-server"), "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
