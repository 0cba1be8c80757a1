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

// exitCode calls ExitCode(err) and returns the code and what it printed to stderr.
func exitCode(t *testing.T, err error) (int, string) {
	t.Helper()
	f, ferr := os.CreateTemp(t.TempDir(), "stderr")
	if ferr != nil {
		t.Fatal(ferr)
	}
	defer f.Close()
	old := os.Stderr
	os.Stderr = f
	code := ExitCode(err)
	os.Stderr = old
	printed, ferr := os.ReadFile(f.Name())
	if ferr != nil {
		t.Fatal(ferr)
	}
	return code, string(printed)
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

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"usage", usageError{errors.New("bad flag")}, 2},
		{"wrapped_usage", fmt.Errorf("controller: %w", usageError{errors.New("bad flag")}), 2},
		{"flag", flagError("workers", "must be >= 1, got %d", 0), 2},
		{"findings", findingsError{errors.New("2 problems")}, 1},
		{"runtime", errors.New("connection refused"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, printed := exitCode(t, tc.err)
			if got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
			// A findings error's message was printed already by the command that found them.
			wantPrinted := "Error: " + tc.err.Error() + "\n"
			if tc.name == "findings" {
				wantPrinted = ""
			}
			if printed != wantPrinted {
				t.Errorf("ExitCode(%v) printed %q, want %q", tc.err, printed, wantPrinted)
			}
		})
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
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error = %q, want it to contain %q", err, tc.wantText)
			}
			if got, _ := exitCode(t, err); got != 2 {
				t.Errorf("ExitCode(%v) = %d, want 2", err, got)
			}
			// main prints the error once; cobra prints nothing of its own.
			if stdout != "" || stderr != "" {
				t.Errorf("csrguard %q printed stdout %q, stderr %q; want nothing", tc.args, stdout, stderr)
			}
		})
	}
}
