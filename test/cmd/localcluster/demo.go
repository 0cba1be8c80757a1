package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/test/controlplane"
)

// demo tells the incident's story: kubelets without serving certificates,
// kubectl logs and kubectl top failing, then csrguard approving exactly what
// each node owns and denying a node's attempt to get a certificate for the
// API server's name, and everything working again.
func demo(ctx context.Context, dir string, n int, image, csrguard string) error {
	if _, err := os.Stat(csrguard); err != nil {
		return fmt.Errorf("csrguard binary: %w (run make build)", err)
	}
	l, err := start(ctx, dir, n, image, demoLoopback)
	if err != nil {
		return err
	}
	defer l.stop()
	admin, err := kubernetes.NewForConfig(l.cp.AdminConfig())
	if err != nil {
		return err
	}

	step("Waiting for every kubelet to ask for a serving certificate")
	if err := waitFor(ctx, 90*time.Second, func() bool { return countState(ctx, admin, servingcsr.Pending) >= len(l.nodes) }); err != nil {
		return fmt.Errorf("kubelets did not file CSRs: %w", err)
	}
	fmt.Println("\nThe incident: nothing approves kubelet-serving CSRs, so no kubelet can serve TLS.")
	table(ctx, admin, l.nodes)
	if !l.loopback {
		// metrics-server fails its first scrape within its 10s resolution.
		_ = waitFor(ctx, 30*time.Second, func() bool { return l.kubectlFails(ctx, "top", "nodes") })
		fmt.Println("kubectl logs, exec and port-forward go API server → kubelet, and metrics-server scrapes kubelets: all fail alike.")
		l.show(ctx, "logs", l.pod)
		l.show(ctx, "top", "nodes")
		fmt.Println()
	}

	step("A compromised node asks for a certificate for the API server's name")
	hostile, err := hostileCSR(ctx, l.cp, l.nodes[len(l.nodes)-1].Name())
	if err != nil {
		return err
	}

	args := []string{"controller", "--kubeconfig=" + l.kubeconfig, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0"}
	if l.loopback {
		step("Starting csrguard controller (policy enforced; TEST ONLY: loopback node addresses allowed)")
		args = append(args, "--insecure-test-allow-loopback")
	} else {
		step("Starting csrguard controller (production policy, no test-only flag)")
	}
	logFile := filepath.Join(dir, "logs", "csrguard.log")
	proc, err := controlplane.StartProcess(csrguard, args, logFile)
	if err != nil {
		return err
	}
	defer func() { _ = proc.Stop() }()

	begin := time.Now()
	err = waitFor(ctx, 90*time.Second, func() bool {
		for _, k := range l.nodes {
			if !strings.HasPrefix(handshake(ctx, k.Endpoint()), "ok") {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("kubelets did not get certificates: %w; csrguard log:\n%s", err, controlplane.Tail(logFile, 20))
	}
	step(fmt.Sprintf("Every kubelet serves a certificate %s after csrguard started", time.Since(begin).Round(100*time.Millisecond)))
	table(ctx, admin, l.nodes)
	if !l.loopback {
		_ = waitFor(ctx, 60*time.Second, func() bool { return !l.kubectlFails(ctx, "top", "nodes") })
		l.show(ctx, "logs", l.pod)
		l.show(ctx, "top", "nodes")
		fmt.Println()
	}

	_ = waitFor(ctx, 15*time.Second, func() bool {
		c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, hostile, metav1.GetOptions{})
		return err == nil && servingcsr.StateOf(c) == servingcsr.Denied
	})
	if c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, hostile, metav1.GetOptions{}); err == nil {
		for _, cond := range c.Status.Conditions {
			if cond.Type == certificatesv1.CertificateDenied {
				fmt.Printf("The compromised node's CSR %s: Denied, reason %s\n  %s\n", hostile, cond.Reason, cond.Message)
			}
		}
	}
	fmt.Printf("\ncsrguard's log: %s\n", logFile)
	return nil
}

// show runs kubectl with args and prints the command and its output.
func (l *local) show(ctx context.Context, args ...string) {
	out, _ := l.kubectl(ctx, args...)
	fmt.Printf("\n$ kubectl %s\n%s", strings.Join(args, " "), out)
}

// kubectlFails reports whether kubectl with args fails.
func (l *local) kubectlFails(ctx context.Context, args ...string) bool {
	_, err := l.kubectl(ctx, args...)
	return err != nil
}

func (l *local) kubectl(ctx context.Context, args ...string) (string, error) {
	return l.cp.Kubectl(ctx, args...)
}

// hostileCSR files, as node, a CSR for its own name plus kubernetes.default.svc
// and the API server's service IP.
func hostileCSR(ctx context.Context, cp *controlplane.ControlPlane, node string) (string, error) {
	cfg, err := cp.NodeConfig(node)
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	first := cp.ServiceCIDR.Masked().Addr().Next()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames:    []string{node, "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.IP(first.AsSlice())},
	}, key)
	if err != nil {
		return "", err
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-impersonate-apiserver-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return created.Name, nil
}

func countState(ctx context.Context, cs kubernetes.Interface, state servingcsr.State) int {
	list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for i := range list.Items {
		if servingcsr.InScope(&list.Items[i]) && servingcsr.StateOf(&list.Items[i]) == state {
			n++
		}
	}
	return n
}

// table prints each node's newest CSR and what a TLS client sees at its kubelet.
func table(ctx context.Context, cs kubernetes.Interface, ks []node) {
	list, _ := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	newest := map[string]*certificatesv1.CertificateSigningRequest{}
	for i := range list.Items {
		c := &list.Items[i]
		if !servingcsr.InScope(c) || strings.HasPrefix(c.Name, "csr-impersonate") {
			continue
		}
		if prev := newest[c.Spec.Username]; prev == nil || c.CreationTimestamp.After(prev.CreationTimestamp.Time) {
			newest[c.Spec.Username] = c
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nNODE\tKUBELET\tCSR\tCSR STATE\tTLS HANDSHAKE")
	for _, k := range ks {
		name, state := "-", "-"
		if c := newest["system:node:"+k.Name()]; c != nil {
			name, state = c.Name, string(servingcsr.StateOf(c))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.Name(), k.Endpoint(), name, state, handshake(ctx, k.Endpoint()))
	}
	_ = w.Flush()
	fmt.Println()
}

func handshake(ctx context.Context, endpoint string) string {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // we only read the certificate
	conn, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return "FAIL " + err.Error()
	}
	defer conn.Close()
	c := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	return fmt.Sprintf("ok: issuer %q, expires %s", c.Issuer.CommonName, c.NotAfter.Format(time.DateOnly))
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond(), nil })
}
