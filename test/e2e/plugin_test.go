package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestKubectlPlugin runs csrguard the way an operator does, through the
// real kubectl with kubectl-csrguard and kubectl_complete-csrguard on PATH.
// As a user without rights, `kubectl csrguard doctor --as=…` exits 3 and
// names the permission it lacks; kubectl completes CSR names through the
// plugin, with the plugin's own flags.
func TestKubectlPlugin(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.registerNode(ctx, c.nodeClient("node-1"), "node-1", kubelet.Addresses("node-1", c.pool.Next()))
	pending := c.createCSR(ctx, c.nodeClient("node-1"), csrtest.New(t, csrtest.Node("node-1"), csrtest.Name("csr-plugin")))

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, c.cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, name := range []string{"kubectl-csrguard", "kubectl_complete-csrguard"} {
		if err := os.Symlink(csrguardBin, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	kubectl := filepath.Join(os.Getenv(controlplane.BinDirEnv), "kubectl")
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, kubectl, args...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+kubeconfig)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			code = exit.ExitCode()
		default:
			t.Fatalf("kubectl %q: %v", args, err)
		}
		return out.String(), errOut.String(), code
	}

	// The administrator's kubeconfig may impersonate; "nobody" may list nothing.
	stdout, stderr, code := run("csrguard", "doctor", "--as=nobody", "--probe=false")
	if code != 3 {
		t.Errorf("kubectl csrguard doctor --as=nobody exited %d, want 3 (could not run)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if want := "kubectl csrguard needs list on nodes, cluster-wide"; !strings.Contains(stderr, want) {
		t.Errorf("kubectl csrguard doctor --as=nobody: stderr lacks %q:\n%s", want, stderr)
	}
	if !strings.Contains(stderr, `User "nobody" cannot list resource "nodes"`) {
		t.Errorf("kubectl csrguard doctor --as=nobody: stderr does not quote the API server:\n%s", stderr)
	}

	// The same user as the administrator gets past that point.
	if _, stderr, code = run("csrguard", "doctor", "--probe=false", "-o", "name"); code == 3 {
		t.Errorf("kubectl csrguard doctor as the administrator exited 3:\n%s", stderr)
	}

	stdout, stderr, _ = run("__complete", "csrguard", "explain", "csr-")
	if want := pending.Name + "\tnode-1, Pending"; !strings.Contains(stdout, want) {
		t.Errorf("kubectl __complete csrguard explain csr-: stdout lacks %q:\n%s\nstderr:\n%s", want, stdout, stderr)
	}
	// Completion runs with the plugin's flags: as nobody, nothing to complete.
	if stdout, _, _ = run("__complete", "csrguard", "approve", "--as=nobody", ""); strings.Contains(stdout, pending.Name) {
		t.Errorf("kubectl __complete csrguard approve --as=nobody completed %s, which nobody may not list:\n%s", pending.Name, stdout)
	}
}
