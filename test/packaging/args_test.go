package packaging

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// TestChartArgsAcceptedByBinary runs csrguard with the flags the chart
// renders, default and with every knob set: csrguard validates every flag
// before it loads the kubeconfig, so reaching "load kubeconfig" (which
// fails: there is none) proves the chart speaks the binary's flags.
func TestChartArgsAcceptedByBinary(t *testing.T) {
	helmBin(t)
	bin := csrguardBinary(t)
	caDir := t.TempDir()
	writeTestCA(t, filepath.Join(caDir, "ca.crt"))
	run := func(t *testing.T, args []string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil {
			t.Fatalf("csrguard %q ran without a cluster", args)
		}
		return string(out)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "default_values"},
		{name: "all_features", args: []string{"--values", allFeatures}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d appsv1.Deployment
			convert(t, find(t, decodeAll(t, render(t, tc.args...)), "Deployment", releaseNamespace, "csrguard"), &d)
			var args []string
			for _, a := range container(t, &d).Args {
				a = strings.ReplaceAll(a, "$(POD_NAMESPACE)", releaseNamespace)
				a = strings.ReplaceAll(a, "/etc/csrguard/kubelet-ca", caDir)
				args = append(args, a)
			}
			args = append(args, "--kubeconfig="+filepath.Join(t.TempDir(), "missing-kubeconfig"))
			if out := run(t, args); !strings.Contains(out, "load kubeconfig") {
				t.Fatalf("csrguard refused the chart's flags:\n%s", out)
			}
			// The control: one bad flag value stops csrguard before the
			// kubeconfig, so the check above can tell.
			if out := run(t, append(args, "--max-sans=0")); strings.Contains(out, "load kubeconfig") || !strings.Contains(out, "max-sans") {
				t.Fatalf("csrguard did not refuse --max-sans=0 before loading the kubeconfig:\n%s", out)
			}
		})
	}
}

// writeTestCA writes a self-signed CA certificate, for --kubelet-ca-file.
func writeTestCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubelet-serving-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
