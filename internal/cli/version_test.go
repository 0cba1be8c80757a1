package cli

import (
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	offline(t)
	stdout, stderr, err := run(t, "version")
	if err != nil {
		t.Fatalf("csrguard version: error = %v", err)
	}
	if !strings.HasPrefix(stdout, "csrguard ") || !strings.HasSuffix(stdout, ")\n") {
		t.Errorf("csrguard version printed %q, want \"csrguard <version> (revision <rev>, <go>)\\n\"", stdout)
	}
	if !strings.Contains(stdout, runtime.Version()) {
		t.Errorf("csrguard version printed %q, want it to name %s", stdout, runtime.Version())
	}
	if stderr != "" {
		t.Errorf("csrguard version wrote to stderr: %q", stderr)
	}
}

func TestVersionRejectsArgs(t *testing.T) {
	offline(t)
	if _, _, err := run(t, "version", "extra"); err == nil {
		t.Error("csrguard version extra: error = nil, want one")
	}
}
