package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// csrServer is an API server that lists two kubelet-serving CSRs, one
// pending and one issued, and answers nothing else.
func csrServer(t *testing.T) string {
	t.Helper()
	pending := csrtest.New(t, csrtest.Name("csr-pending"))
	issued := csrtest.New(t, csrtest.Node("node-b"), csrtest.Name("csr-issued"))
	issued.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	issued.Status.Certificate = []byte("issued")
	list := certificatesv1.CertificateSigningRequestList{
		TypeMeta: metav1.TypeMeta{APIVersion: "certificates.k8s.io/v1", Kind: "CertificateSigningRequestList"},
		Items:    []certificatesv1.CertificateSigningRequest{*pending, *issued},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/certificates.k8s.io/v1/certificatesigningrequests" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCompleteCSRNames(t *testing.T) {
	server := csrServer(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"explain_any_csr", []string{"__complete", "explain", "--server=" + server, ""},
			"csr-issued\tnode-b, Issued\ncsr-pending\tnode-a, Pending\n:4\n"},
		{"explain_prefix", []string{"__complete", "explain", "--server=" + server, "csr-i"},
			"csr-issued\tnode-b, Issued\n:4\n"},
		{"explain_takes_one", []string{"__complete", "explain", "--server=" + server, "csr-pending", ""}, ":4\n"},
		{"approve_pending_only", []string{"__complete", "approve", "--server=" + server, ""},
			"csr-pending\tnode-a, Pending\n:4\n"},
		{"approve_not_twice", []string{"__complete", "approve", "--server=" + server, "csr-pending", ""}, ":4\n"},
		{"output", []string{"__complete", "doctor", "-o", ""}, "table\nwide\njson\nyaml\nname\njsonpath=\njsonpath-file=\n:6\n"},
		{"sort_by", []string{"__complete", "certs", "--sort-by", ""}, "node\nexpiry\n:4\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offline(t)
			stdout, _, err := run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(stdout, tc.want); diff != "" {
				t.Errorf("csrguard %q (-got +want):\n%s", tc.args, diff)
			}
		})
	}
}

// TestCompletionPlugin: kubectl runs kubectl_complete-csrguard with the
// words typed after `kubectl csrguard`, no __complete of its own.
func TestCompletionPlugin(t *testing.T) {
	offline(t)
	server := csrServer(t)
	old := os.Args
	t.Cleanup(func() { os.Args = old })
	os.Args = []string{"/usr/local/bin/" + completionPlugin, "approve", "--server=" + server, ""}
	var out bytes.Buffer
	cmd := New()
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "csr-pending\tnode-a, Pending\n:4\n"; got != want {
		t.Errorf("%s approve '' printed %q, want %q", completionPlugin, got, want)
	}
	if got := cmd.DisplayName(); got != "kubectl csrguard" {
		t.Errorf("display name = %q, want kubectl csrguard", got)
	}
}

// TestLaptopCommandsFeelLikeKubectl: every command run against a cluster
// takes kubectl's connection flags and output flags and documents its exit
// codes; check-config, offline, takes the output flags.
func TestLaptopCommandsFeelLikeKubectl(t *testing.T) {
	offline(t)
	root := New()
	kubectlFlags := []string{"kubeconfig", "context", "cluster", "user", "as", "as-group", "as-uid", "request-timeout", "server", "token",
		"certificate-authority", "client-certificate", "client-key", "insecure-skip-tls-verify", "tls-server-name", "namespace", "kube-api-qps", "kube-api-burst"}
	outputFlags := []string{"output", "no-headers"}
	for _, name := range []string{"doctor", "certs", "explain", "approve", "preflight", "check-config"} {
		c, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		want := outputFlags
		if name != "check-config" {
			want = append(want, kubectlFlags...)
		}
		for _, f := range want {
			if c.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", name, f)
			}
		}
		if n := c.Flags().Lookup("namespace"); n != nil && (n.Shorthand != "n" || !strings.Contains(n.Usage, "The namespace csrguard runs in")) {
			t.Errorf("%s -n is %q: %s, want csrguard's namespace", name, n.Shorthand, n.Usage)
		}
		if !strings.Contains(c.Long, "Exit codes:\n  0  success\n") {
			t.Errorf("%s --help does not list its exit codes:\n%s", name, c.Long)
		}
	}
	if c, _, err := root.Find([]string{"controller"}); err != nil || c.Flags().Lookup("as") != nil {
		t.Errorf("controller takes --as (err %v): it keeps its own flags", err)
	}
}
