// Package packaging tests how csrguard is shipped: the Helm chart (lint,
// render, schema, security context, RBAC), deploy/install.yaml (up to date,
// and sufficient: applied to a real API server, its ServiceAccount runs the
// controller and can do nothing more than it needs), the Talos patches, the
// monitoring files synced into the chart, the OCI image tarball, and the
// release (make release: built, pushed to a registry, installed from it).
package packaging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csrguard/csrguard/test/promtest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Paths from this package's directory (go test runs in it).
const (
	repoRoot    = "../.."
	chartDir    = repoRoot + "/deploy/helm/csrguard"
	installFile = repoRoot + "/deploy/install.yaml"
	// monitoringFile is install.yaml's monitoring: the ServiceMonitor,
	// PrometheusRule and dashboard, apart because they need the Prometheus
	// Operator's CRDs, which a cluster being bootstrapped does not have.
	monitoringFile = repoRoot + "/deploy/install-monitoring.yaml"
	talosDir       = repoRoot + "/deploy/talos"

	// The release name and namespace install.yaml is rendered with.
	releaseName      = "csrguard"
	releaseNamespace = "csrguard"
)

// helmBin returns the pinned helm binary (see promtest.Tool).
func helmBin(t testing.TB) string { return promtest.Tool(t, "helm") }

// runHelm runs helm with args and returns its stdout; a failure returns an
// error holding stderr. Helm gets a private home so that no user
// configuration or repository cache changes what it renders.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := helmBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = helmEnv(home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String()) + " (" + err.Error() + ")")
	}
	return stdout.String(), nil
}

// render runs `helm template` for the chart as install.yaml does, with extra
// flags (e.g. --set), and fails t on error.
func render(t testing.TB, extra ...string) string {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace}, extra...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", extra, err)
	}
	return out
}

// decodeAll splits a multi-document YAML stream into objects, skipping empty
// documents.
func decodeAll(t testing.TB, manifest string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("split YAML: %v", err)
		}
		js, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("YAML document: %v\n%s", err, doc)
		}
		if string(js) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			t.Fatalf("object: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

// find returns the one object of kind, namespace and name, failing t if
// there is not exactly one.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %s/%s, found %d in %s", kind, namespace, name, len(found), describe(objs))
	}
	return found[0]
}

// ofKind returns the objects of kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func describe(objs []*unstructured.Unstructured) string {
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// convert decodes u into a typed object such as *appsv1.Deployment.
func convert(t testing.TB, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// readYAML reads every document of a YAML file as a generic map; unlike
// decodeAll it needs no Kubernetes kind (Talos patches have none).
func readYAML(t testing.TB, path string) []map[string]any {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(readFile(t, path))))
	var docs []map[string]any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		js, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
}

// chartAppVersion is the appVersion in Chart.yaml: the release that
// install.yaml, the Talos patches and the image tag pin.
var chartAppVersion = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(chartDir + "/Chart.yaml")
	if err != nil {
		return "", err
	}
	js, err := utilyaml.ToJSON(b)
	if err != nil {
		return "", err
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := json.Unmarshal(js, &c); err != nil {
		return "", err
	}
	if c.AppVersion == "" {
		return "", errors.New("Chart.yaml has no appVersion")
	}
	return c.AppVersion, nil
})

func appVersion(t testing.TB) string {
	t.Helper()
	v, err := chartAppVersion()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// releaseURL is where a release publishes install.yaml.
func releaseURL(version string) string {
	return "https://github.com/csrguard/csrguard/releases/download/" + version + "/install.yaml"
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// helmEnv is this process's environment with helm's cache, config and data
// under home, so that no test reads or writes the user's helm setup.
func helmEnv(home string) []string {
	return append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
}
