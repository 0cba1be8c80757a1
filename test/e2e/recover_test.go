package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestRecoverFromLaptop replays the operator's side of the incident: no
// approver is installed, kubelets have no serving certificates, and a
// compromised node has filed hostile CSRs. doctor names the problem and the
// Talos fix; approve --dry-run lists exactly the legitimate CSRs; approve
// --yes approves them and leaves the hostile ones untouched; then doctor is
// happy and certs shows every node with a valid certificate.
func TestRecoverFromLaptop(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	var legit []string
	for _, name := range []string{"talos-cp-1", "talos-worker-1", "talos-worker-2"} {
		c.addKubelet(ctx, name, kubelet.Talos)
		legit = append(legit, c.waitPending(ctx, name).Name)
	}
	slices.Sort(legit)
	attacker := c.byName["talos-worker-2"]
	ip := attacker.Addresses()[0].Address
	hostileCSRs := []string{
		c.createCSR(ctx, c.nodeClient(attacker.Name()), csrtest.New(t, csrtest.Node(attacker.Name()), csrtest.Name("hostile-apiserver"), csrtest.DNSNames("kubernetes.default.svc"), csrtest.IPAddresses(ip))).Name,
		c.createCSR(ctx, c.nodeClient(attacker.Name()), csrtest.New(t, csrtest.Node(attacker.Name()), csrtest.Name("hostile-neighbour"), csrtest.IPAddresses(c.nodes[0].Addresses()[0].Address))).Name,
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, c.cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, int) {
		t.Helper()
		return runCLI(t, ctx, append(args, "--kubeconfig="+kubeconfig)...)
	}

	out, code := cli("doctor")
	if code == 0 {
		t.Errorf("doctor exited 0 during the incident; output:\n%s", out)
	}
	for _, want := range append([]string{"tls: internal error", "KubeExternalManifestConfig", "talosctl"}, legit...) {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}

	out, code = cli("approve", "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("approve --dry-run exited %d:\n%s", code, out)
	}
	var plan []struct{ CSR, Verdict string }
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("approve --dry-run -o json: %v\n%s", err, out)
	}
	var wouldApprove []string
	for _, p := range plan {
		if p.Verdict == "Approve" {
			wouldApprove = append(wouldApprove, p.CSR)
		}
	}
	slices.Sort(wouldApprove)
	if diff := cmp.Diff(wouldApprove, legit); diff != "" {
		t.Errorf("approve --dry-run would approve (-got +want):\n%s", diff)
	}
	for _, name := range append(legit, hostileCSRs...) {
		if s := c.state(ctx, name); s != "Pending" {
			t.Errorf("after --dry-run CSR %s is %s, want Pending", name, s)
		}
	}

	if out, code = cli("approve", "--yes"); code != 0 {
		t.Fatalf("approve --yes exited %d:\n%s", code, out)
	}
	for _, k := range c.nodes {
		if _, err := k.WaitForCertificate(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range hostileCSRs {
		if s := c.state(ctx, name); s != "Pending" {
			t.Errorf("hostile CSR %s is %s after approve --yes, want Pending (untouched)", name, s)
		}
	}

	out, code = cli("doctor")
	if code != 0 {
		t.Errorf("doctor exited %d after recovery:\n%s", code, out)
	}
	out, code = cli("certs", "-o", "json")
	if code != 0 {
		t.Fatalf("certs exited %d:\n%s", code, out)
	}
	var certs struct {
		Certificates []struct{ Node, State string }
	}
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		t.Fatalf("certs -o json: %v\n%s", err, out)
	}
	rows := certs.Certificates
	if len(rows) != len(c.nodes) {
		t.Errorf("certs lists %d nodes, want %d:\n%s", len(rows), len(c.nodes), out)
	}
	for _, r := range rows {
		if r.State != "ok" {
			t.Errorf("certs: node %s state %q, want ok", r.Node, r.State)
		}
	}
}

// runCLI runs the csrguard binary and returns its standard output and exit
// code; standard error is logged.
func runCLI(t *testing.T, ctx context.Context, args ...string) (string, int) {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, csrguardBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("csrguard %s stderr:\n%s", args[0], stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("run csrguard %v: %v", args, err)
	return "", -1
}
