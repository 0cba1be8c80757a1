package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/csrguard/csrguard/internal/diagnose"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestNoServiceCIDRAPI: on a control plane that serves no ServiceCIDR
// objects (before 1.33), csrguard does not fail: it says so once (log and
// metric), reserves the range given by --service-cidrs (a node asking for an
// address in it is denied while its neighbour is issued), and doctor without
// that flag tells the user to set it.
//
// Since 1.34 kube-apiserver cannot run without the API (its Service IP
// allocator is built on it: MultiCIDRServiceAllocator is locked on), so the
// API is hidden from csrguard by a proxy instead (hideServiceCIDRs): csrguard
// sees what it would see on a 1.32 API server. make test-matrix runs this on
// every version, older ones included.
func TestNoServiceCIDRAPI(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	kubeconfig := hideServiceCIDRs(t, c.cp.AdminConfig())
	g := c.startCSRGuard(ctx, "csrguard", true, "--kubeconfig="+kubeconfig, "--service-cidrs="+c.cp.ServiceCIDR.String())

	good := c.addKubelet(ctx, "node-1", kubelet.Debian)
	if _, err := good.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Not the kubernetes Service's IP (the Service itself reserves that one):
	// an address only the flag's range reserves.
	inRange := c.cp.ServiceCIDR.Addr().Next().Next().Next().String()
	squatter := c.addKubelet(ctx, "squatter", kubelet.Debian, kubelet.Addresses("squatter", c.pool.Next(),
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: inRange})...)
	// Its first CSR, whatever its state: csrguard may decide it before a
	// poll sees it pending.
	var csr certificatesv1.CertificateSigningRequest
	controlplane.Eventually(t, ctx, "a CSR from the squatter", func() bool {
		csrs := c.csrsOf(ctx, squatter.Name())
		if len(csrs) == 0 {
			return false
		}
		csr = csrs[0]
		return true
	})
	controlplane.Eventually(t, ctx, "the squatter's CSR decided", func() bool { return c.state(ctx, csr.Name) != "Pending" })
	if got, reason := c.state(ctx, csr.Name), c.denyReason(ctx, csr.Name); got != "Denied" || reason != string(policy.ReservedAddress) {
		t.Errorf("CSR for %s, in --service-cidrs: %s (%s), want Denied (ReservedAddress)", inRange, got, reason)
	}

	if got := g.scrape(ctx).value("csrguard_servicecidr_api_missing"); got != 1 {
		t.Errorf("csrguard_servicecidr_api_missing = %v, want 1", got)
	}
	log := controlplane.Tail(g.log, 1000)
	if n := strings.Count(log, "The API server serves no ServiceCIDR objects"); n != 1 {
		t.Errorf("csrguard said %d times that the API server serves no ServiceCIDR objects, want once; log:\n%s", n, log)
	}

	doctor := func(args ...string) []string {
		t.Helper()
		out, _ := runCLI(t, ctx, append([]string{"doctor", "-o", "json", "--probe=false", "--kubeconfig=" + kubeconfig}, args...)...)
		var r struct{ Findings []diagnose.Finding }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("doctor -o json: %v\n%s", err, out)
		}
		var ids []string
		for _, f := range r.Findings {
			ids = append(ids, f.ID)
		}
		return ids
	}
	// csrguard runs here as a process, not as a Deployment whose flags doctor
	// could read: doctor goes by its own.
	if ids := doctor(); !slices.Contains(ids, diagnose.IDServiceCIDRsUnknown) {
		t.Errorf("doctor without --service-cidrs: findings %q, want %s", ids, diagnose.IDServiceCIDRsUnknown)
	}
	if ids := doctor("--service-cidrs=" + c.cp.ServiceCIDR.String()); slices.Contains(ids, diagnose.IDServiceCIDRsUnknown) {
		t.Errorf("doctor with --service-cidrs: findings %q, want no %s", ids, diagnose.IDServiceCIDRsUnknown)
	}
}

// hideServiceCIDRs serves the API server of admin through a proxy, as admin,
// that serves no ServiceCIDR API: it leaves servicecidrs out of the
// networking.k8s.io/v1 discovery document, answers 404 for them, and offers
// only the unaggregated discovery documents. It returns a kubeconfig for the
// proxy.
func hideServiceCIDRs(t *testing.T, admin *rest.Config) string {
	t.Helper()
	target, err := url.Parse(admin.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(admin)
	if err != nil {
		t.Fatal(err)
	}
	const group = "/apis/networking.k8s.io/v1"
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// Aggregated discovery would list every group in one document;
			// the per-group documents are simpler to edit.
			if strings.Contains(r.In.Header.Get("Accept"), "apidiscovery.k8s.io") {
				r.Out.Header.Set("Accept", "application/json")
			}
		},
		Transport:     transport,
		FlushInterval: -1, // watches stream
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.URL.Path != group || resp.StatusCode != http.StatusOK {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			var list metav1.APIResourceList
			if err := json.Unmarshal(body, &list); err != nil {
				return err
			}
			list.APIResources = slices.DeleteFunc(list.APIResources, func(r metav1.APIResource) bool {
				return strings.HasPrefix(r.Name, "servicecidrs")
			})
			if body, err = json.Marshal(list); err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, group+"/servicecidrs") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
	}}
	if err := controlplane.WriteKubeconfig(kubeconfig, cfg); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}
