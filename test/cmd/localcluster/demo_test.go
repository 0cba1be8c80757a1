package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrguard/csrguard/test/controlplane"
)

// TestDemo runs `make demo`'s program as a newcomer would, and checks that it
// tells the whole story with the real components and csrguard's production
// policy: the incident (TLS handshakes, kubectl logs and kubectl top failing),
// then every kubelet served, logs and top working, the hostile CSR denied.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster; skipped with -short")
	}
	if os.Getenv(controlplane.BinDirEnv) == "" {
		t.Fatalf("$%s is not set: run hack/test.sh, or set it to the directory hack/build-kube.sh prints", controlplane.BinDirEnv)
	}
	dir := t.TempDir()
	bin := func(name, pkg string) string {
		out := filepath.Join(dir, name)
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			t.Fatalf("build %s: %v", pkg, err)
		}
		return out
	}
	csrguard := bin("csrguard", "github.com/csrguard/csrguard/cmd/csrguard")
	demo := bin("localcluster", "github.com/csrguard/csrguard/test/cmd/localcluster")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, demo, "demo", "--dir", filepath.Join(dir, "demo"), "--csrguard", csrguard)
	out, err := cmd.CombinedOutput()
	t.Logf("make demo's output:\n%s", out)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	text := string(out)
	incident, fixed, ok := strings.Cut(text, "Starting csrguard controller (production policy, no test-only flag)")
	if !ok {
		t.Fatal("the demo did not start csrguard with its production policy")
	}
	for _, want := range []string{
		"real-node-1", "FAIL remote error: tls: internal error",
		"$ kubectl logs web", "remote error: tls: internal error",
		"$ kubectl top nodes", "error: metrics not available yet",
	} {
		if !strings.Contains(incident, want) {
			t.Errorf("the incident part lacks %q", want)
		}
	}
	for _, want := range []string{
		`ok: issuer "csrguard-local-kubelet-serving-ca"`,
		`hollow container "web" of pod default/web started on node real-node-1`,
		"CPU(cores)", "Denied, reason ReservedName",
	} {
		if !strings.Contains(fixed, want) {
			t.Errorf("the part after csrguard lacks %q", want)
		}
	}
	if strings.Contains(text, "WARNING") || strings.Contains(text, "insecure") {
		t.Error("the demo fell back to loopback addresses")
	}
	if strings.Contains(fixed, "FAIL") {
		t.Error("a kubelet still fails its handshake after csrguard")
	}
}
