package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrguard/csrguard/internal/configcheck"
)

func testdataPath(name string) string { return filepath.Join("testdata", name) }

func TestCheckConfigGolden(t *testing.T) {
	tests := []struct {
		golden string
		args   []string
		// wantErrors is true when error findings make the command fail (exit 1).
		wantErrors bool
	}{
		{"checkconfig-worker.table.golden", []string{testdataPath("checkconfig-worker.yaml")}, true},
		{"checkconfig-talos.table.golden", []string{testdataPath("checkconfig-controlplane.yaml"), testdataPath("checkconfig-worker.yaml")}, false},
		{"checkconfig-talos.json.golden", []string{"-o", "json", testdataPath("checkconfig-controlplane.yaml"), testdataPath("checkconfig-worker.yaml")}, false},
		{"checkconfig-worker.json.golden", []string{"--output=json", testdataPath("checkconfig-worker.yaml")}, true},
		{"checkconfig-csrguard.table.golden", []string{testdataPath("checkconfig-csrguard.yaml")}, false},
		{"checkconfig-worker.wide.golden", []string{"-o", "wide", testdataPath("checkconfig-worker.yaml")}, true},
		{"checkconfig-talos.wide.golden", []string{"-o", "wide", testdataPath("checkconfig-controlplane.yaml"), testdataPath("checkconfig-worker.yaml")}, false},
		{"checkconfig-worker.no-headers.golden", []string{"--no-headers", testdataPath("checkconfig-worker.yaml")}, true},
		{"checkconfig-talos.name.golden", []string{"-o", "name", testdataPath("checkconfig-controlplane.yaml"), testdataPath("checkconfig-worker.yaml")}, false},
		{"checkconfig-talos.jsonpath.golden", []string{"-o", `jsonpath={.rotation}{range .findings[*]}{"\n"}{.file}:{.line} {.id}{end}`, testdataPath("checkconfig-controlplane.yaml"), testdataPath("checkconfig-worker.yaml")}, false},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.golden, ".golden"), func(t *testing.T) {
			offline(t)
			stdout, stderr, err := run(t, append([]string{"check-config"}, tc.args...)...)
			if tc.wantErrors {
				if _, ok := errors.AsType[findingsError](err); !ok {
					t.Fatalf("error = %v, want a findings error", err)
				}
				if code, printed := exitCode(t, err); code != 1 || printed != "" {
					t.Errorf("ExitCode = %d printing %q, want 1 printing nothing (the findings are the message)", code, printed)
				}
			} else if err != nil {
				t.Fatalf("error = %v, want nil", err)
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			golden(t, tc.golden, stdout)
			if strings.HasSuffix(tc.golden, ".json.golden") {
				var r configcheck.Result
				if err := json.Unmarshal([]byte(stdout), &r); err != nil {
					t.Fatalf("output is not a configcheck.Result: %v", err)
				}
				for _, f := range r.Findings {
					if f.Line < 1 || f.Fix == nil {
						t.Errorf("finding %s: line %d, fix %v; want a line and a fix list", f.ID, f.Line, f.Fix)
					}
				}
			}
		})
	}
}

func TestCheckConfigYAML(t *testing.T) {
	offline(t)
	stdout, _, err := run(t, "check-config", "-o", "yaml", testdataPath("checkconfig-csrguard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rotation: \"on\"", "id: metrics-server-insecure-tls", "severity: warning", "line: 31"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("YAML output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestCheckConfigStdin(t *testing.T) {
	offline(t)
	var out, errOut bytes.Buffer
	cmd := New()
	cmd.SetArgs([]string{"check-config", testdataPath("checkconfig-worker.yaml"), "-"})
	cmd.SetIn(strings.NewReader("cluster:\n  extraManifests:\n    - https://github.com/csrguard/csrguard/releases/download/v0.1.0/install.yaml\n"))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("error = %v, want nil: the approver from stdin satisfies the worker's rotation", err)
	}
	if !strings.Contains(out.String(), "<stdin>:3") || !strings.Contains(out.String(), "csrguard-pinned") {
		t.Errorf("output does not name <stdin>:3 csrguard-pinned:\n%s", out.String())
	}
}

func TestCheckConfigFileErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantText string
	}{
		{"no_files", nil, "", 2, "requires at least 1 arg(s), only received 0\nSee 'csrguard check-config --help'."},
		{"bad_output", []string{"-o", "xml", testdataPath("checkconfig-worker.yaml")}, "", 2, `--output must be "table", "wide", "json", "yaml", "name", "jsonpath=TEMPLATE" or "jsonpath-file=FILE", got "xml"`},
		{"bad_jsonpath", []string{"-o", "jsonpath={.findings[", testdataPath("checkconfig-worker.yaml")}, "", 2, `--output jsonpath={.findings[: unterminated array`},
		{"missing_jsonpath_file", []string{"-o", "jsonpath-file=" + testdataPath("no-such-template"), testdataPath("checkconfig-worker.yaml")}, "", 2, `--output jsonpath-file=testdata/no-such-template: cannot read the template`},
		{"stdin_twice", []string{"-", "-"}, "a: 1\n", 2, `"-" (standard input) may be given once`},
		{"missing_file", []string{testdataPath("checkconfig-no-such-file.yaml")}, "", 3, "read testdata/checkconfig-no-such-file.yaml: open testdata/checkconfig-no-such-file.yaml: no such file or directory"},
		{"directory", []string{"testdata"}, "", 3, "read testdata: "},
		{"malformed", []string{testdataPath("checkconfig-worker.yaml"), testdataPath("checkconfig-malformed.yaml")}, "", 1, "testdata/checkconfig-malformed.yaml:5: not valid YAML: did not find expected key"},
		{"malformed_stdin", []string{"-"}, "a: [1, 2\nb: 3\n", 1, "<stdin>:2: not valid YAML: did not find expected ',' or ']'"},
		{"too_large", []string{"-"}, "a: " + strings.Repeat("x", configcheck.MaxFileSize), 3, "read <stdin>: larger than the 10 MiB limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offline(t)
			var out, errOut bytes.Buffer
			cmd := New()
			cmd.SetArgs(append([]string{"check-config"}, tc.args...))
			cmd.SetIn(strings.NewReader(tc.stdin))
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			err := cmd.Execute()
			if err == nil {
				t.Fatalf("error = nil, want %q", tc.wantText)
			}
			// The error is wantText's first line; ExitCode may print more
			// (where to read the usage).
			if first, _, _ := strings.Cut(tc.wantText, "\n"); !strings.Contains(err.Error(), first) {
				t.Errorf("error = %q, want it to contain %q", err, first)
			}
			code, printed := exitCode(t, err)
			if code != tc.wantCode {
				t.Errorf("ExitCode = %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(printed, tc.wantText) {
				t.Errorf("ExitCode printed %q, want the error", printed)
			}
			if out.Len() != 0 {
				t.Errorf("stdout = %q, want nothing before a file error", out.String())
			}
		})
	}
}
