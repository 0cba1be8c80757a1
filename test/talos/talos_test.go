// Package talos checks csrguard's Talos patches (deploy/talos) and its
// check-config (internal/configcheck) against Talos's own configuration code,
// github.com/siderolabs/talos/pkg/machinery: configs generated the way
// talosctl gen config generates them, patched with configpatcher as talosctl
// patches them, and validated for mode metal as talosctl validate does.
//
// It is a module of its own so that machinery and its dependencies stay out
// of csrguard's go.mod; hack/test.sh runs it. The machinery version is
// pinned in go.mod and in hack/versions.env (TALOS_MACHINERY_VERSION), and
// TestMachineryVersion keeps the two equal. That version (1.11) knows the
// legacy config style only: it generates v1alpha1 configs and rejects the
// KubeletConfig and KubeExternalManifestConfig documents of Talos 1.14's
// multi-document style, so that style is tested here by the exact error
// with which it is rejected, not by applying it.
package talos

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/constants"

	"github.com/csrguard/csrguard/internal/buildinfo"
	"github.com/csrguard/csrguard/internal/configcheck"
)

const (
	repoRoot      = "../.."
	legacyPatch   = repoRoot + "/deploy/talos/legacy.patch.yaml"
	multidocPatch = repoRoot + "/deploy/talos/multidoc.patch.yaml"
	jsonPatch     = repoRoot + "/internal/configcheck/testdata/talos-json-patch.yaml"
	machineryPath = "github.com/siderolabs/talos/pkg/machinery"
)

// metal is talosctl validate --mode metal: an installed machine, not a
// container.
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

// validate is talosctl validate --mode metal --strict.
func validate(t *testing.T, cfg config.Provider) {
	t.Helper()
	if _, err := cfg.Validate(metal{}, validation.WithLocal(), validation.WithStrict()); err != nil {
		t.Errorf("validate (mode metal, strict): %v", err)
	}
}

// generatedConfigs holds the configs generate makes, once: making the
// cluster's keys takes seconds.
var generatedConfigs = sync.OnceValues(func() (map[machine.Type][]byte, error) {
	in, err := generate.NewInput("homelab", "https://10.0.0.10:6443", constants.DefaultKubernetesVersion, generate.WithInstallDisk("/dev/sda"))
	if err != nil {
		return nil, err
	}
	out := map[machine.Type][]byte{}
	for _, typ := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
		cfg, err := in.Config(typ)
		if err != nil {
			return nil, err
		}
		// Comments and examples included, as talosctl gen config writes it.
		if out[typ], err = cfg.Bytes(); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// generated is a fresh copy of the machine config of typ that talosctl gen
// config writes with this machinery: the legacy (v1alpha1) style.
func generated(t *testing.T, typ machine.Type) config.Provider {
	t.Helper()
	configs, err := generatedConfigs()
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	cfg, err := configloader.NewFromBytes(configs[typ])
	if err != nil {
		t.Fatalf("load the generated %s config: %v", typ, err)
	}
	return cfg
}

// loadPatch reads a patch file as talosctl reads --patch @file.
func loadPatch(t *testing.T, path string) (configpatcher.Patch, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return configpatcher.LoadPatch(data)
}

// apply patches cfg (talosctl gen config --config-patch, talosctl patch).
func apply(cfg configpatcher.Input, patch configpatcher.Patch) (config.Provider, error) {
	out, err := configpatcher.Apply(cfg, []configpatcher.Patch{patch})
	if err != nil {
		return nil, err
	}
	return out.Config()
}

// bytes encodes cfg as talosctl writes it, comments and examples included.
func bytes(t *testing.T, cfg config.Provider) []byte {
	t.Helper()
	b, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkConfig runs csrguard check-config on the named files' contents.
func checkConfig(t *testing.T, files ...configcheck.File) configcheck.Result {
	t.Helper()
	r, err := configcheck.CheckFiles(files)
	if err != nil {
		t.Fatalf("check-config: %v", err)
	}
	return r
}

// findingIDs returns the findings as "id file", in order.
func findingIDs(r configcheck.Result) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.ID+" "+f.File)
	}
	return out
}

// installs returns what the files install, as "component file".
func installs(r configcheck.Result) []string {
	var out []string
	for _, m := range r.Manifests {
		out = append(out, m.Component+" "+m.File)
	}
	return out
}

// TestMachineryVersion: the machinery go.mod requires is the version
// hack/versions.env names.
func TestMachineryVersion(t *testing.T) {
	value := func(path, prefix string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
				return "v" + strings.TrimPrefix(strings.TrimSpace(v), "v")
			}
		}
		return ""
	}
	required := value("go.mod", machineryPath+" ")
	pinned := value(repoRoot+"/hack/versions.env", "TALOS_MACHINERY_VERSION?=")
	if pinned == "v" || required != pinned {
		t.Errorf("go.mod requires machinery %q, hack/versions.env pins TALOS_MACHINERY_VERSION %q: they must be equal", required, pinned)
	}
}

// TestLegacyPatch: legacy.patch.yaml applies to generated control-plane and
// worker configs and they validate; check-config then finds rotation on
// with csrguard installed by the control-plane config, and not by the
// worker's, whose extraManifests Talos does not apply.
func TestLegacyPatch(t *testing.T) {
	patch, err := loadPatch(t, legacyPatch)
	if err != nil {
		t.Fatalf("load %s: %v", legacyPatch, err)
	}
	files := map[machine.Type]configcheck.File{}
	for _, typ := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
		cfg, err := apply(configpatcher.WithConfig(generated(t, typ)), patch)
		if err != nil {
			t.Fatalf("%s: apply %s: %v", typ, legacyPatch, err)
		}
		validate(t, cfg)
		kubelet := cfg.RawV1Alpha1().MachineConfig.MachineKubelet
		if got := kubelet.KubeletExtraArgs["rotate-server-certificates"]; got != "true" {
			t.Errorf("%s: machine.kubelet.extraArgs.rotate-server-certificates = %q, want \"true\"", typ, got)
		}
		if got, want := cfg.RawV1Alpha1().ClusterConfig.ExtraManifests, []string{buildinfo.InstallURL}; !cmp.Equal(got, want) {
			t.Errorf("%s: cluster.extraManifests = %v, want %v", typ, got, want)
		}
		files[typ] = configcheck.File{Name: typ.String() + ".yaml", Data: bytes(t, cfg)}
	}

	tests := []struct {
		name     string
		files    []configcheck.File
		findings []string
		installs []string
	}{
		{"controlplane", []configcheck.File{files[machine.TypeControlPlane]},
			[]string{"csrguard-pinned controlplane.yaml"}, []string{"csrguard controlplane.yaml"}},
		{"worker", []configcheck.File{files[machine.TypeWorker]},
			[]string{"talos-patch worker.yaml", "rotation-without-approver worker.yaml", "manifest-not-applied worker.yaml"}, nil},
		{"together", []configcheck.File{files[machine.TypeControlPlane], files[machine.TypeWorker]},
			[]string{"csrguard-pinned controlplane.yaml", "manifest-not-applied worker.yaml"}, []string{"csrguard controlplane.yaml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkConfig(t, tc.files...)
			if r.Rotation != configcheck.RotationOn {
				t.Errorf("rotation %q, want on", r.Rotation)
			}
			if diff := cmp.Diff(findingIDs(r), tc.findings); diff != "" {
				t.Errorf("findings (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(installs(r), tc.installs); diff != "" {
				t.Errorf("installs (-got +want):\n%s", diff)
			}
		})
	}
}

// TestMultidocPatchRejected: this machinery rejects multidoc.patch.yaml with
// the error of every Talos before 1.14, and check-config, given the
// generated config, names the patch that does apply.
func TestMultidocPatchRejected(t *testing.T) {
	_, err := loadPatch(t, multidocPatch)
	if got, want := errString(err), `"KubeletConfig" "v1alpha1": not registered`; got != want {
		t.Errorf("load %s: error %q, want %q", multidocPatch, got, want)
	}
	for _, typ := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
		r := checkConfig(t, configcheck.File{Name: typ.String() + ".yaml", Data: bytes(t, generated(t, typ))})
		var fixes []string
		for _, f := range r.Findings {
			if f.ID == configcheck.IDTalosPatch {
				fixes = append(fixes, f.Fix...)
			}
		}
		want := []string{`Patch every node's config with deploy/talos/legacy.patch.yaml: in a running cluster only after csrguard is installed and ready (deploy/talos/README.md, "Existing cluster").`}
		if diff := cmp.Diff(fixes, want); diff != "" {
			t.Errorf("%s: talos-patch fixes (-got +want):\n%s", typ, diff)
		}
	}
}

// TestMultiDocument: this machinery generates a single v1alpha1 document,
// and accepts the other documents it knows beside it. The legacy patch
// still applies to such a config; a JSON patch does not.
func TestMultiDocument(t *testing.T) {
	cp := generated(t, machine.TypeControlPlane)
	if n := len(cp.Documents()); n != 1 {
		t.Errorf("generated control-plane config has %d documents, want 1 (v1alpha1)", n)
	}
	plain, err := cp.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		t.Fatal(err)
	}
	multi := append(plain, []byte("---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: remote-log\nurl: tcp://10.0.0.1:3456/\n")...)
	cfg, err := configloader.NewFromBytes(multi)
	if err != nil {
		t.Fatalf("load a v1alpha1 config with a KmsgLogConfig document: %v", err)
	}
	if n := len(cfg.Documents()); n != 2 {
		t.Errorf("config has %d documents, want 2", n)
	}

	patch, err := loadPatch(t, legacyPatch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := apply(configpatcher.WithConfig(cfg), patch)
	if err != nil {
		t.Fatalf("apply %s to a two-document config: %v", legacyPatch, err)
	}
	validate(t, patched)

	jp, err := loadPatch(t, jsonPatch)
	if err != nil {
		t.Fatal(err)
	}
	_, err = apply(configpatcher.WithBytes(multi), jp)
	if got, want := errString(err), "JSON6902 patches are not supported for multi-document machine configuration"; got != want {
		t.Errorf("JSON patch on a two-document config: error %q, want %q", got, want)
	}
}

// TestJSONPatch: the JSON-patch fixture fails on generated configs, and
// check-config warns about exactly the operations Talos rejects there.
func TestJSONPatch(t *testing.T) {
	jp, err := loadPatch(t, jsonPatch)
	if err != nil {
		t.Fatal(err)
	}
	const missing = `failure applying rfc6902 patches to talos machine config: add operation does not apply: doc is missing path: "/cluster/extraManifests/-": missing value`
	for _, typ := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
		_, err := apply(configpatcher.WithConfig(generated(t, typ)), jp)
		if got := errString(err); got != missing {
			t.Errorf("%s: apply %s: error %q, want %q", typ, jsonPatch, got, missing)
		}
	}
	data, err := os.ReadFile(jsonPatch)
	if err != nil {
		t.Fatal(err)
	}
	r := checkConfig(t, configcheck.File{Name: "patch.yaml", Data: data})
	if diff := cmp.Diff(findingIDs(r), []string{"json-patch-missing-path patch.yaml", "csrguard-pinned patch.yaml"}); diff != "" {
		t.Errorf("check-config findings (-got +want):\n%s", diff)
	}

	// One operation at a time, on every generated config: check-config
	// warns where Talos's patcher fails.
	ops := []struct{ path, value string }{
		{"/machine/kubelet/extraArgs/rotate-server-certificates", `"true"`},
		{"/machine/kubelet/extraConfig/serverTLSBootstrap", "true"},
		{"/cluster/extraManifests/-", buildinfo.InstallURL},
		{"/cluster/inlineManifests/-", "{name: csrguard, contents: ''}"},
		{"/machine/kubelet/extraArgs", "{rotate-server-certificates: 'true'}"},
		{"/machine/kubelet/extraConfig", "{serverTLSBootstrap: true}"},
		{"/cluster/extraManifests", "[" + buildinfo.InstallURL + "]"},
	}
	for _, op := range ops {
		patch := []byte("- op: add\n  path: " + op.path + "\n  value: " + op.value + "\n")
		p, err := configpatcher.LoadPatch(patch)
		if err != nil {
			t.Fatal(err)
		}
		var failed []string
		for _, typ := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
			if _, err := apply(configpatcher.WithConfig(generated(t, typ)), p); err != nil {
				failed = append(failed, typ.String())
			}
		}
		warned := false
		for _, f := range checkConfig(t, configcheck.File{Name: "patch.yaml", Data: patch}).Findings {
			warned = warned || f.ID == configcheck.IDJSONPatchMissingPath
		}
		if talosFails := len(failed) > 0; warned != talosFails {
			t.Errorf("add %s: check-config warns %v, Talos fails on %v", op.path, warned, failed)
		}
	}

	// Why a warning, not an error: the control-plane file talosctl gen
	// config writes, with its examples, has an empty extraManifests list, so
	// the fixture applies to it.
	configs, err := generatedConfigs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply(configpatcher.WithBytes(configs[machine.TypeControlPlane]), jp); err != nil {
		t.Errorf("apply %s to the control-plane file as written: %v", jsonPatch, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
