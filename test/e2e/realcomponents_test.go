package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
	"github.com/csrguard/csrguard/test/netns"
	"github.com/csrguard/csrguard/test/realkubelet"
)

// TestIncidentWithRealComponents reproduces the seed's symptom list with the
// real kubelet, the real metrics-server and an API server that verifies
// kubelets with the kubelet-serving CA, then starts csrguard with its
// production policy and shows every symptom heal with no manual step: the
// kubelet's TLS handshake, API server → kubelet proxy, kubectl logs and exec,
// metrics-server's scrapes and kubectl top. A second rotation of the real
// kubelet is approved too (certificates live 2 minutes here).
func TestIncidentWithRealComponents(t *testing.T) {
	ctx := controlplane.Deadline(t, 5*time.Minute)
	c := newCluster(t, controlplane.Options{MetricsServer: true, SigningDuration: 2 * time.Minute})
	k := c.addRealKubelet(ctx, "real-1", c.pool.Next())
	c.runPod(ctx, "web", k.Name())
	csr := c.waitPending(ctx, k.Name())
	t.Logf("the real kubelet asked for its serving certificate: CSR %s", csr.Name)

	// The incident, symptom by symptom.
	if _, err := handshake(ctx, k.Endpoint(), nil); err == nil || !strings.Contains(err.Error(), "remote error: tls: internal error") {
		t.Errorf("TLS handshake with the kubelet: %v, want remote error: tls: internal error", err)
	}
	controlplane.Eventually(t, ctx, "the kubelet to log the missing certificate", func() bool {
		return fileContains(k.LogFile(), "no serving certificate available for the kubelet")
	})
	if out, err := c.proxyHealthz(ctx, k.Name()); err == nil || !strings.Contains(out, "tls: internal error") {
		t.Errorf("API server → kubelet proxy: %v: %s; want tls: internal error", err, out)
	}
	if out, err := c.kubectl(ctx, "logs", "web"); err == nil || !strings.Contains(out, "tls: internal error") {
		t.Errorf("kubectl logs: %v\n%s\nwant tls: internal error", err, out)
	}
	if out, err := c.kubectl(ctx, "exec", "web", "--", "echo", "hi"); err == nil || !strings.Contains(out, "tls: internal error") {
		t.Errorf("kubectl exec: %v\n%s\nwant tls: internal error", err, out)
	}
	controlplane.Eventually(t, ctx, "metrics-server to fail scraping the kubelet", func() bool {
		return fileContains(c.cp.LogFile("metrics-server"), "Failed to scrape node") &&
			fileContains(c.cp.LogFile("metrics-server"), "tls: internal error")
	})
	if out, err := c.kubectl(ctx, "top", "nodes"); err == nil {
		t.Errorf("kubectl top nodes worked without a kubelet certificate:\n%s", out)
	}
	// csrguard doctor names the incident, with metrics-server's failure and
	// how it verifies kubelets as evidence.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, c.cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, ctx, "doctor", "-o", "json", "--kubeconfig="+kubeconfig)
	var report struct {
		Findings []struct {
			ID       string   `json:"id"`
			Title    string   `json:"title"`
			Evidence []string `json:"evidence"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	evidence := map[string]string{}
	for _, f := range report.Findings {
		evidence[f.ID] = f.Title + "\n" + strings.Join(f.Evidence, "\n")
	}
	if code != 1 || !strings.Contains(evidence["kubelets-without-serving-certificate"], "tls: internal error") {
		t.Errorf("doctor exit %d, incident finding:\n%s", code, evidence["kubelets-without-serving-certificate"])
	}
	for _, want := range []string{"metrics-server cannot scrape 1 kubelet", "--kubelet-certificate-authority=" + c.cp.KubeletServingCAFile(), "no metrics for real-1"} {
		if !strings.Contains(evidence["metrics-server-kubelet-tls"], want) {
			t.Errorf("doctor's metrics-server finding lacks %q:\n%s", want, evidence["metrics-server-kubelet-tls"])
		}
	}

	// csrguard, with its production policy and no test-only flag.
	c.startCSRGuard(ctx, "csrguard", true)
	cert, err := waitServing(ctx, k.Endpoint(), pool(t, c.cp.KubeletServingCAPEM), nil)
	if err != nil {
		t.Fatalf("the real kubelet's serving certificate: %v", err)
	}
	node, err := c.admin.CoreV1().Nodes().Get(ctx, k.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sans(cert), addressSANs(node.Status.Addresses)); diff != "" {
		t.Errorf("served certificate SANs (-got +want the Node's addresses):\n%s", diff)
	}
	controlplane.Eventually(t, ctx, "API server → kubelet proxy /healthz", func() bool {
		out, err := c.proxyHealthz(ctx, k.Name())
		return err == nil && out == "ok"
	})
	controlplane.Eventually(t, ctx, "kubectl logs", func() bool {
		out, err := c.kubectl(ctx, "logs", "web")
		return err == nil && strings.Contains(out, `hollow container "web"`)
	})
	if out, err := c.kubectl(ctx, "exec", "web", "--", "echo", "hi"); err != nil || !strings.Contains(out, `["echo" "hi"]`) {
		t.Errorf("kubectl exec after csrguard: %v\n%s", err, out)
	}
	controlplane.Eventually(t, ctx, "kubectl top nodes to list the real kubelet", func() bool {
		out, err := c.kubectl(ctx, "top", "nodes")
		return err == nil && strings.Contains(out, k.Name())
	})

	// The kubelet rotates on its own at 70–90 % of the lifetime.
	next, err := waitServing(ctx, k.Endpoint(), pool(t, c.cp.KubeletServingCAPEM), cert)
	if err != nil {
		t.Fatalf("the real kubelet's second certificate: %v", err)
	}
	t.Logf("rotated: serial %s → %s", cert.SerialNumber, next.SerialNumber)
	for _, csr := range c.csrsOf(ctx, k.Name()) {
		if s := servingcsr.StateOf(&csr); s != servingcsr.Issued && s != servingcsr.Pending {
			t.Errorf("CSR %s of the real kubelet: %s", csr.Name, s)
		}
		for _, cond := range csr.Status.Conditions {
			if cond.Type == certificatesv1.CertificateApproved && cond.Reason != servingcsr.ApprovedReason {
				t.Errorf("CSR %s approved by %q, not csrguard", csr.Name, cond.Reason)
			}
		}
	}
}

// TestSimulatedKubeletMatchesReal compares, field by field, the serving CSR
// the real kubelet sends with the one a simulated kubelet (test/kubelet)
// sends for the same dual-stack Node with the same credential, so that the
// simulation the scale tests rest on cannot drift from the kubelet. A
// simulated kubelet with a drifted template (IPv6 before IPv4) is caught.
func TestSimulatedKubeletMatchesReal(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	cfg, err := c.cp.NodeConfig("twin")
	if err != nil {
		t.Fatal(err)
	}
	v6 := netns.NewPool(netns.KubeletsIPv6).Next()
	realKubelet := c.addRealKubelet(ctx, "twin", c.pool.Next(), v6, cfg)
	realCSR := c.waitPending(ctx, realKubelet.Name())
	node, err := c.admin.CoreV1().Nodes().Get(ctx, realKubelet.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the real kubelet reports %v", node.Status.Addresses)

	simulate := func(port int, tmpl func(string, []corev1.NodeAddress) *x509.CertificateRequest) certificatesv1.CertificateSigningRequest {
		t.Helper()
		seen := []string{realCSR.Name}
		for _, csr := range c.csrsOf(ctx, realKubelet.Name()) {
			seen = append(seen, csr.Name)
		}
		sim, err := kubelet.Start(ctx, kubelet.Options{Name: realKubelet.Name(), Config: cfg, Addresses: node.Status.Addresses,
			Port: port, SkipRegistration: true, Template: tmpl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Stop)
		return c.waitPending(ctx, realKubelet.Name(), seen...)
	}

	if diff := csrFidelity(t, realCSR, simulate(10251, nil)); len(diff) > 0 {
		t.Errorf("the simulated kubelet's CSR differs from the real kubelet's:\n%s", strings.Join(diff, "\n"))
	}
	drifted := func(name string, addrs []corev1.NodeAddress) *x509.CertificateRequest {
		tmpl := servingcsr.KubeletTemplate(name, addrs)
		slices.Reverse(tmpl.IPAddresses)
		return tmpl
	}
	if diff := csrFidelity(t, realCSR, simulate(10252, drifted)); len(diff) == 0 {
		t.Error("a simulated kubelet with a drifted template (IPv6 first) sends the real kubelet's CSR: the comparison cannot fail")
	}
}

// csrFidelity lists how simCSR differs from realCSR in everything a kubelet
// decides: the spec (signer, usages, requester, lifetime) and the request
// (version, subject as encoded, SANs in order, extensions as encoded, key and
// signature algorithms). Keys and signatures differ by nature.
func csrFidelity(t *testing.T, realCSR, simCSR certificatesv1.CertificateSigningRequest) []string {
	t.Helper()
	var diffs []string
	cmpField := func(what string, a, b any) {
		if d := cmp.Diff(a, b); d != "" {
			diffs = append(diffs, fmt.Sprintf("%s (-real +simulated):\n%s", what, d))
		}
	}
	cmpField("signerName", realCSR.Spec.SignerName, simCSR.Spec.SignerName)
	cmpField("usages", realCSR.Spec.Usages, simCSR.Spec.Usages)
	cmpField("username", realCSR.Spec.Username, simCSR.Spec.Username)
	cmpField("groups", realCSR.Spec.Groups, simCSR.Spec.Groups)
	cmpField("extra", realCSR.Spec.Extra, simCSR.Spec.Extra)
	cmpField("expirationSeconds", realCSR.Spec.ExpirationSeconds, simCSR.Spec.ExpirationSeconds)
	r, err := servingcsr.Parse(realCSR.Spec.Request)
	if err != nil {
		t.Fatalf("parse the real kubelet's request: %v", err)
	}
	s, err := servingcsr.Parse(simCSR.Spec.Request)
	if err != nil {
		t.Fatalf("parse the simulated kubelet's request: %v", err)
	}
	cmpField("version", r.Version, s.Version)
	cmpField("subject (DER)", r.RawSubject, s.RawSubject)
	cmpField("DNS SANs", r.DNSNames, s.DNSNames)
	ipText := func(c *x509.CertificateRequest) []string {
		var out []string
		for _, ip := range c.IPAddresses {
			out = append(out, fmt.Sprintf("%s (%d bytes)", ip, len(ip)))
		}
		return out
	}
	cmpField("IP SANs", ipText(r), ipText(s))
	cmpField("email and URI SANs", len(r.EmailAddresses)+len(r.URIs), len(s.EmailAddresses)+len(s.URIs))
	cmpField("extensions (DER)", r.Extensions, s.Extensions)
	cmpField("public key algorithm", r.PublicKeyAlgorithm.String(), s.PublicKeyAlgorithm.String())
	curve := func(c *x509.CertificateRequest) string {
		if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
			return k.Curve.Params().Name
		}
		return fmt.Sprintf("%T", c.PublicKey)
	}
	cmpField("key", curve(r), curve(s))
	cmpField("signature algorithm", r.SignatureAlgorithm.String(), s.SignatureAlgorithm.String())
	return diffs
}

// addRealKubelet starts a real kubelet with node IPs ips (and, optionally,
// a rest.Config to authenticate with) and waits until its Node reports them.
func (c *cluster) addRealKubelet(ctx context.Context, name string, args ...any) *realkubelet.Kubelet {
	c.t.Helper()
	opts := realkubelet.Options{Name: name, Dir: filepath.Join(c.t.TempDir(), name)}
	for _, a := range args {
		switch v := a.(type) {
		case netip.Addr:
			opts.IPs = append(opts.IPs, v)
		case *rest.Config:
			opts.Config = v
		}
	}
	k, err := realkubelet.Start(c.cp, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		k.Stop()
		if c.t.Failed() {
			c.t.Logf("--- kubelet %s log tail (%s):\n%s", name, k.LogFile(), controlplane.Tail(k.LogFile(), 30))
		}
	})
	controlplane.Eventually(c.t, ctx, "the real kubelet "+name+" to register with its addresses", func() bool {
		n, err := c.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil && len(n.Status.Addresses) == len(opts.IPs)+1
	})
	return k
}

// runPod runs a Pod on node (a real kubelet) and waits until it runs.
func (c *cluster) runPod(ctx context.Context, name, node string) {
	c.t.Helper()
	if err := realkubelet.RunPod(ctx, c.admin, name, node); err != nil {
		c.t.Fatal(err)
	}
	controlplane.Eventually(c.t, ctx, "pod "+name+" running", func() bool {
		p, err := c.admin.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
}

// proxyHealthz calls the kubelet's /healthz through the API server, as
// kubectl get --raw /api/v1/nodes/NODE/proxy/healthz does, and returns the
// response body (the API server's error text on failure).
func (c *cluster) proxyHealthz(ctx context.Context, node string) (string, error) {
	b, err := c.admin.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "healthz").DoRaw(ctx)
	return strings.TrimSpace(string(b)), err
}

// kubectl runs kubectl against c as an administrator.
func (c *cluster) kubectl(ctx context.Context, args ...string) (string, error) {
	return c.cp.Kubectl(ctx, args...)
}

// waitServing waits until the TLS server at endpoint presents a certificate
// that verifies with roots and is not prev, and returns it.
func waitServing(ctx context.Context, endpoint string, roots *x509.CertPool, prev *x509.Certificate) (*x509.Certificate, error) {
	var cert *x509.Certificate
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cert, last = handshake(ctx, endpoint, roots)
		if last == nil && prev != nil && cert.Equal(prev) {
			last = errors.New("it still serves the previous certificate")
		}
		return last == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no new serving certificate at %s: %w (last error: %w)", endpoint, err, last)
	}
	return cert, nil
}

func fileContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}
