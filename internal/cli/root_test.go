package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// offline makes sure no test can reach a cluster: no kubeconfig, not in a pod, no namespace.
func offline(t *testing.T) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-such-kubeconfig"))
	t.Setenv("HOME", t.TempDir()) // no ~/.kube/config either
	for _, name := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE"} {
		t.Setenv(name, "") // restores the old value after the test
		os.Unsetenv(name)
	}
}

// run executes the csrguard command with args and returns what it printed and its error.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := New()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// exitCode calls ExitCode on a csrguard command whose stderr is a buffer,
// and returns the code and what it printed there.
func exitCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var errOut bytes.Buffer
	cmd := New()
	cmd.SetErr(&errOut)
	return ExitCode(cmd, err), errOut.String()
}

// namesFlag reports whether msg names --flag (and not merely a longer flag it prefixes).
func namesFlag(msg, flag string) bool {
	return regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `([^a-z0-9-]|$)`).MatchString(msg)
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("%s mismatch (-got +want; go test -update rewrites it):\n%s", path, diff)
	}
}

func TestRootHelp(t *testing.T) {
	offline(t)
	stdout, stderr, err := run(t, "--help")
	if err != nil {
		t.Fatalf("csrguard --help: error = %v", err)
	}
	if stderr != "" {
		t.Errorf("csrguard --help wrote to stderr: %q", stderr)
	}
	golden(t, "root-help.golden", stdout)
}

// forbidden is the API server's answer to a request user may not make.
func forbidden(verb string, gr schema.GroupResource, name, namespace string) error {
	scope := "at the cluster scope"
	if namespace != "" {
		scope = fmt.Sprintf("in the namespace %q", namespace)
	}
	return apierrors.NewForbidden(gr, name, fmt.Errorf("User %q cannot %s resource %q in API group %q %s", "nobody", verb, gr.Resource, gr.Group, scope))
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
		// wantPrinted is what ExitCode prints after "Error: <err>\n"; "-" for nothing at all.
		wantPrinted string
	}{
		{"usage", usageError{errors.New("bad flag")}, 2, ""},
		{"wrapped_usage", fmt.Errorf("controller: %w", usageError{errors.New("bad flag")}), 2, ""},
		{"cobra_usage", usageError{helpHint{errors.New("unknown flag: --x"), "csrguard doctor"}}, 2, "See 'csrguard doctor --help'.\n"},
		{"flag", flagError("workers", "must be >= 1, got %d", 0), 2, ""},
		// A findings error's message was printed already by the command that found them.
		{"findings", findingsError{errors.New("2 problems")}, 1, "-"},
		{"invalid_input", invalidInputError{errors.New("a.yaml:3: not valid YAML")}, 1, ""},
		{"runtime", errors.New("connection refused"), 3, ""},
		{"not_found", fmt.Errorf("get CSR %q: %w", "csr-1", apierrors.NewNotFound(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "csr-1")), 3, ""},
		{"forbidden_list_nodes", fmt.Errorf("list nodes: %w", forbidden("list", schema.GroupResource{Resource: "nodes"}, "", "")), 3,
			"csrguard needs list on nodes, cluster-wide: ask for it, or run as someone who has it (--as, --context, --kubeconfig).\n"},
		{"forbidden_list_csrs", fmt.Errorf("list kubelet-serving certificatesigningrequests: %w", forbidden("list", schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "", "")), 3,
			"csrguard needs list on certificatesigningrequests.certificates.k8s.io, cluster-wide: ask for it, or run as someone who has it (--as, --context, --kubeconfig).\n"},
		{"forbidden_namespaced_get", forbidden("get", schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "csrguard", "csrguard"), 3,
			`csrguard needs get on leases.coordination.k8s.io "csrguard" in namespace "csrguard": ask for it, or run as someone who has it (--as, --context, --kubeconfig).` + "\n"},
		{"forbidden_subresource", forbidden("update", schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests/approval"}, "csr-1", ""), 3,
			`csrguard needs update on certificatesigningrequests.certificates.k8s.io/approval "csr-1", cluster-wide: ask for it, or run as someone who has it (--as, --context, --kubeconfig).` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, printed := exitCode(t, tc.err)
			if got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
			wantPrinted := "Error: " + tc.err.Error() + "\n" + tc.wantPrinted
			if tc.wantPrinted == "-" {
				wantPrinted = ""
			}
			if printed != wantPrinted {
				t.Errorf("ExitCode(%v) printed %q, want %q", tc.err, printed, wantPrinted)
			}
		})
	}
}

// TestExitCodeWritesToCommandStderr: the error goes where the command's
// output goes (a test buffer, kubectl's pipe), never to the process's stderr.
func TestExitCodeWritesToCommandStderr(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stderr
	os.Stderr = f
	defer func() { os.Stderr = old }()
	var errOut bytes.Buffer
	cmd := New()
	cmd.SetErr(&errOut)
	ExitCode(cmd, errors.New("connection refused"))
	os.Stderr = old
	if got, want := errOut.String(), "Error: connection refused\n"; got != want {
		t.Errorf("command stderr = %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(f.Name()); len(b) > 0 {
		t.Errorf("ExitCode wrote %q to os.Stderr", b)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantText string
	}{
		{"unknown_flag", []string{"controller", "--no-such-flag"}, "unknown flag: --no-such-flag\nSee 'csrguard controller --help'."},
		{"bad_int", []string{"controller", "--workers=many"}, `invalid argument "many" for "--workers" flag`},
		{"bad_duration", []string{"controller", "--hold-retry=soon"}, `invalid argument "soon" for "--hold-retry" flag`},
		{"unknown_root_flag", []string{"--no-such-flag"}, "unknown flag: --no-such-flag\nSee 'csrguard --help'."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offline(t)
			stdout, stderr, err := run(t, tc.args...)
			if err == nil {
				t.Fatalf("csrguard %q: error = nil, want a usage error", tc.args)
			}
			// What the user reads is what ExitCode prints: the error, then
			// for errors cobra found, where to read the usage.
			got, printed := exitCode(t, err)
			if !strings.Contains(printed, tc.wantText) {
				t.Errorf("ExitCode printed %q, want it to contain %q", printed, tc.wantText)
			}
			if got != 2 {
				t.Errorf("ExitCode(%v) = %d, want 2", err, got)
			}
			// main prints the error once; cobra prints nothing of its own.
			if stdout != "" || stderr != "" {
				t.Errorf("csrguard %q printed stdout %q, stderr %q; want nothing", tc.args, stdout, stderr)
			}
		})
	}
}
