package configcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/buildinfo"
	"github.com/csrguard/csrguard/internal/severity"
)

// checkNamed checks the files names, each given in contents as its text or
// as "@" and the name of a file in testdata.
func checkNamed(t *testing.T, names []string, contents map[string]string) Result {
	t.Helper()
	var files []File
	for _, name := range names {
		data := []byte(contents[name])
		if fixture, ok := strings.CutPrefix(contents[name], "@"); ok {
			var err error
			if data, err = os.ReadFile(filepath.Join("testdata", fixture)); err != nil {
				t.Fatal(err)
			}
		}
		files = append(files, File{Name: name, Data: data})
	}
	r, err := CheckFiles(files)
	if err != nil {
		t.Fatalf("CheckFiles: %v", err)
	}
	return r
}

// installs returns what the files install, as "component file:line".
func installs(r Result) []string {
	var out []string
	for _, m := range r.Manifests {
		out = append(out, fmt.Sprintf("%s %s:%d", m.Component, m.File, m.Line))
	}
	return out
}

// finding returns the first finding with id, or fails the test.
func finding(t *testing.T, r Result, id string) Finding {
	t.Helper()
	for _, f := range r.Findings {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("no %s finding among %v", id, ids(r))
	return Finding{}
}

const (
	legacyControlPlaneCSRGuard = "version: v1alpha1\nmachine:\n  type: controlplane\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: true\n" +
		"cluster:\n  extraManifests:\n    - " + buildinfo.InstallURL + "\n"
	multidocWorkerCSRGuard = "version: v1alpha1\nmachine:\n  type: worker\n---\napiVersion: v1alpha1\nkind: KubeletConfig\nimage: ghcr.io/siderolabs/kubelet:v1.37.0\n" +
		"extraArgs:\n  rotate-server-certificates: true\n---\napiVersion: v1alpha1\nkind: KubeExternalManifestConfig\nname: csrguard\nurl: " + buildinfo.InstallURL + "\n"
	legacyWorkerInlineCSRGuard = "version: v1alpha1\nmachine:\n  type: worker\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: true\n" +
		"cluster:\n  inlineManifests:\n    - name: csrguard\n      contents: |\n        apiVersion: apps/v1\n        kind: Deployment\n        metadata:\n          name: csrguard\n          namespace: csrguard\n"
	legacyPatchText = "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: true\ncluster:\n  extraManifests:\n    - " + buildinfo.InstallURL + "\n"
)

// TestWorkerManifests: Talos applies manifests from control-plane configs
// only, so the ones in a worker's config install nothing: rotation on in a
// worker config alone has no approver, whatever its extraManifests say.
func TestWorkerManifests(t *testing.T) {
	tests := []struct {
		name     string
		files    []string
		contents map[string]string
		want     []string // findings
		installs []string
	}{
		{"legacy_worker_alone", []string{"worker.yaml"}, map[string]string{"worker.yaml": "@talos-legacy-worker-csrguard.yaml"}, []string{
			"talos-patch worker.yaml:8",
			"rotation-without-approver worker.yaml:11",
			"manifest-not-applied worker.yaml:18",
		}, nil},
		{"legacy_worker_with_controlplane", []string{"worker.yaml", "controlplane.yaml"},
			map[string]string{"worker.yaml": "@talos-legacy-worker-csrguard.yaml", "controlplane.yaml": legacyControlPlaneCSRGuard}, []string{
				"manifest-not-applied worker.yaml:18",
				"csrguard-pinned controlplane.yaml:9",
			}, []string{"csrguard controlplane.yaml:9"}},
		{"multidoc_worker_alone", []string{"worker.yaml"}, map[string]string{"worker.yaml": multidocWorkerCSRGuard}, []string{
			"talos-patch worker.yaml:6",
			"rotation-without-approver worker.yaml:9",
			"manifest-not-applied worker.yaml:14",
		}, nil},
		{"inline_manifest_in_worker", []string{"worker.yaml"}, map[string]string{"worker.yaml": legacyWorkerInlineCSRGuard}, []string{
			"talos-patch worker.yaml:4",
			"rotation-without-approver worker.yaml:6",
			"manifest-not-applied worker.yaml:12",
		}, nil},
		{"join_is_worker", []string{"worker.yaml"}, map[string]string{"worker.yaml": strings.Replace(legacyWorkerInlineCSRGuard, "type: worker", "type: join", 1)}, []string{
			"talos-patch worker.yaml:4",
			"rotation-without-approver worker.yaml:6",
			"manifest-not-applied worker.yaml:12",
		}, nil},
		// A patch says no machine.type: it goes to control-plane nodes too.
		{"patch_installs", []string{"patch.yaml"}, map[string]string{"patch.yaml": legacyPatchText}, []string{
			"csrguard-pinned patch.yaml:7",
		}, []string{"csrguard patch.yaml:7"}},
		{"controlplane_installs", []string{"controlplane.yaml"}, map[string]string{"controlplane.yaml": legacyControlPlaneCSRGuard}, []string{
			"csrguard-pinned controlplane.yaml:9",
		}, []string{"csrguard controlplane.yaml:9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkNamed(t, tc.files, tc.contents)
			if diff := cmp.Diff(ids(r), tc.want); diff != "" {
				t.Errorf("findings (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(installs(r), tc.installs); diff != "" {
				t.Errorf("installs (-got +want):\n%s", diff)
			}
		})
	}

	r := checkNamed(t, []string{"worker.yaml"}, map[string]string{"worker.yaml": "@talos-legacy-worker-csrguard.yaml"})
	if got, want := finding(t, r, IDManifestNotApplied).Message,
		"csrguard ("+buildinfo.InstallURL+") is in a worker's machine config (machine.type: worker, line 6): "+
			"Talos applies manifests from control-plane configs only, so it installs nothing from here"; got != want {
		t.Errorf("manifest-not-applied message:\n got %s\nwant %s", got, want)
	}
	if got, want := finding(t, r, IDRotationWithoutApprover).Message, "(csrguard (worker.yaml:18) is in a worker's config, whose manifests Talos does not apply)"; !strings.HasSuffix(got, want) {
		t.Errorf("rotation-without-approver message %q does not end with %q", got, want)
	}
}

// TestTalosPatch: check-config names the patch a whole machine config takes
// by where it configures the kubelet, until rotation is on and csrguard
// installed.
func TestTalosPatch(t *testing.T) {
	legacy := "version: v1alpha1\nmachine:\n  type: controlplane\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.36.3\n"
	multidoc := "version: v1alpha1\nmachine:\n  type: controlplane\n---\napiVersion: v1alpha1\nkind: KubeletConfig\nimage: ghcr.io/siderolabs/kubelet:v1.37.0\n"
	tests := []struct {
		name string
		yaml string
		want []string // the talos-patch findings' "line: fix"
	}{
		{"legacy", legacy, []string{`4: Patch every node's config with deploy/talos/legacy.patch.yaml: in a running cluster only after csrguard is installed and ready (deploy/talos/README.md, "Existing cluster").`}},
		{"multidoc", multidoc, []string{`6: Patch every node's config with deploy/talos/multidoc.patch.yaml: in a running cluster only after csrguard is installed and ready (deploy/talos/README.md, "Existing cluster").`}},
		{"legacy_done", legacyControlPlaneCSRGuard, nil},
		{"legacy_csrguard_rotation_off", strings.Replace(legacyControlPlaneCSRGuard, "true", "false", 1), []string{
			`4: Patch every node's config with deploy/talos/legacy.patch.yaml: in a running cluster only after csrguard is installed and ready (deploy/talos/README.md, "Existing cluster").`}},
		// Both ways is invalid-field; neither tells no style; a patch is no config.
		{"both", legacy + "---\napiVersion: v1alpha1\nkind: KubeletConfig\n", nil},
		{"no_kubelet", "version: v1alpha1\nmachine:\n  type: worker\n", nil},
		{"patch", legacyPatchText, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range check(t, tc.yaml).Findings {
				if f.ID == IDTalosPatch {
					got = append(got, fmt.Sprintf("%d: %s", f.Line, strings.Join(f.Fix, " | ")))
				}
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("talos-patch findings (-got +want):\n%s", diff)
			}
		})
	}

	f := finding(t, check(t, legacy), IDTalosPatch)
	want := "This is a legacy-style Talos machine config: the kubelet is configured under machine.kubelet, as in every config generated before Talos 1.14 (an upgrade keeps the style). " +
		"To turn rotation on and install csrguard, patch it with deploy/talos/legacy.patch.yaml; Talos rejects deploy/talos/multidoc.patch.yaml on it " +
		`(Talos 1.14: "kubelet config is already set in v1alpha1 config (.machine.kubelet)"; before 1.14: "KubeletConfig" "v1alpha1": not registered)`
	if f.Message != want {
		t.Errorf("legacy message:\n got %s\nwant %s", f.Message, want)
	}
}

// TestJSONPatchMissingPath: a JSON patch operation below a path that
// generated configs lack fails there, unless the patch creates the path
// first. test/talos checks the same paths against Talos's own patcher.
func TestJSONPatchMissingPath(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"append_manifest", "- op: add\n  path: /cluster/extraManifests/-\n  value: " + buildinfo.InstallURL + "\n",
			[]string{"json-patch-missing-path in.yaml:2", "csrguard-pinned in.yaml:3"}},
		{"append_inline_manifest", "- op: add\n  path: /cluster/inlineManifests/-\n  value: {name: x, contents: \"\"}\n",
			[]string{"json-patch-missing-path in.yaml:2"}},
		{"list_created_first", "- op: add\n  path: /cluster/extraManifests\n  value: []\n- op: add\n  path: /cluster/extraManifests/-\n  value: " + buildinfo.InstallURL + "\n",
			[]string{"csrguard-pinned in.yaml:6"}},
		{"cluster_created_first", "- op: add\n  path: /cluster\n  value: {extraManifests: []}\n- op: add\n  path: /cluster/extraManifests/0\n  value: " + buildinfo.InstallURL + "\n",
			[]string{"csrguard-pinned in.yaml:6"}},
		{"flag", "- op: add\n  path: /machine/kubelet/extraArgs/rotate-server-certificates\n  value: \"true\"\n",
			[]string{"json-patch-missing-path in.yaml:2", "rotation-without-approver in.yaml:3"}},
		{"replace_config_field", "- op: replace\n  path: /machine/kubelet/extraConfig/serverTLSBootstrap\n  value: false\n",
			[]string{"json-patch-missing-path in.yaml:2"}},
		{"args_map", "- op: add\n  path: /machine/kubelet/extraArgs\n  value:\n    rotate-server-certificates: \"false\"\n", nil},
		// A replace creates nothing: the add after it still needs the list.
		{"replace_creates_nothing", "- op: replace\n  path: /cluster/extraManifests\n  value: []\n- op: add\n  path: /cluster/extraManifests/-\n  value: " + buildinfo.InstallURL + "\n",
			[]string{"json-patch-missing-path in.yaml:5", "csrguard-pinned in.yaml:6"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(ids(check(t, tc.yaml)), tc.want); diff != "" {
				t.Errorf("findings (-got +want):\n%s", diff)
			}
		})
	}

	f := finding(t, check(t, tests[0].yaml), IDJSONPatchMissingPath)
	want := `the JSON patch's add at /cluster/extraManifests/- fails ("doc is missing path") on a config without cluster.extraManifests, ` +
		"and no worker config has it, nor a config that talosctl gen config --config-patch patches; Talos also refuses JSON patches on any multi-document config"
	if f.Message != want || f.Severity != severity.Warning || len(f.Fix) != 1 || !strings.HasPrefix(f.Fix[0], "Use a strategic-merge patch") {
		t.Errorf("finding = %+v, want message %q, a warning, one strategic-merge fix", f, want)
	}
}
