package configcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/buildinfo"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/severity"
)

// setting is a Setting as the tests compare it.
type setting struct {
	Path string
	Line int
	On   bool
}

func settings(r Result) []setting {
	var out []setting
	for _, s := range r.Settings {
		out = append(out, setting{s.Path, s.Line, s.On})
	}
	return out
}

// ids returns the findings as "ID file:line" for comparison.
func ids(r Result) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("%s %s:%d", f.ID, f.File, f.Line))
	}
	return out
}

func check(t *testing.T, yaml string) Result {
	t.Helper()
	r, err := Check("in.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return r
}

// TestSpellings covers every way to turn rotation on, and off.
func TestSpellings(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  []setting
		state RotationState
	}{
		{"talos_extra_args_bool", "version: v1alpha1\nmachine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: true\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 5, true}}, RotationOn},
		{"talos_extra_args_string", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: \"true\"\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 4, true}}, RotationOn},
		{"talos_extra_args_false", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: false\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 4, false}}, RotationOff},
		{"talos_extra_args_list_last_wins", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: [\"false\", \"true\"]\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 4, true}}, RotationOn},
		{"talos_extra_args_one", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: \"1\"\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 4, true}}, RotationOn},
		{"talos_extra_config", "machine:\n  kubelet:\n    extraConfig:\n      serverTLSBootstrap: true\n",
			[]setting{{"machine.kubelet.extraConfig.serverTLSBootstrap", 4, true}}, RotationOn},
		{"talos_extra_config_false", "machine:\n  kubelet:\n    extraConfig:\n      serverTLSBootstrap: false\n",
			[]setting{{"machine.kubelet.extraConfig.serverTLSBootstrap", 4, false}}, RotationOff},
		{"talos_kubelet_without_rotation", "version: v1alpha1\nmachine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.36.3\n",
			nil, RotationOff},
		{"talos_cluster_only_patch", "cluster:\n  clusterName: homelab\n", nil, RotationUnknown},
		{"kubelet_config_doc_extra_args", "apiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs:\n  rotate-server-certificates: true\n",
			[]setting{{"KubeletConfig.extraArgs.rotate-server-certificates", 4, true}}, RotationOn},
		{"kubelet_config_doc_extra_args_off", "apiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs:\n  rotate-server-certificates: \"false\"\n",
			[]setting{{"KubeletConfig.extraArgs.rotate-server-certificates", 4, false}}, RotationOff},
		{"kubelet_config_doc_config", "apiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  serverTLSBootstrap: true\n",
			[]setting{{"KubeletConfig.config.serverTLSBootstrap", 4, true}}, RotationOn},
		{"kubelet_config_doc_config_off", "apiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  serverTLSBootstrap: false\n",
			[]setting{{"KubeletConfig.config.serverTLSBootstrap", 4, false}}, RotationOff},
		{"kubelet_configuration", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: true\n",
			[]setting{{"KubeletConfiguration.serverTLSBootstrap", 3, true}}, RotationOn},
		{"kubelet_configuration_yaml11_yes", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: yes\n",
			[]setting{{"KubeletConfiguration.serverTLSBootstrap", 3, true}}, RotationOn},
		{"kubelet_configuration_off", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: false\n",
			[]setting{{"KubeletConfiguration.serverTLSBootstrap", 3, false}}, RotationOff},
		{"kubelet_configuration_default", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
			nil, RotationOff},
		{"kubeadm_v1beta3_extra_args", "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    rotate-server-certificates: \"true\"\n",
			[]setting{{"JoinConfiguration.nodeRegistration.kubeletExtraArgs.rotate-server-certificates", 5, true}}, RotationOn},
		{"kubeadm_v1beta4_extra_args", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    - name: node-ip\n      value: 10.0.0.1\n    - name: rotate-server-certificates\n      value: \"true\"\n",
			[]setting{{"InitConfiguration.nodeRegistration.kubeletExtraArgs[rotate-server-certificates]", 8, true}}, RotationOn},
		{"container_flag_bare", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kubelet\nspec:\n  containers:\n    - name: kubelet\n      image: kindest/node:v1.36.3\n      args:\n        - --rotate-server-certificates\n",
			[]setting{{`Pod kubelet container "kubelet" --rotate-server-certificates`, 10, true}}, RotationOn},
		{"container_flag_false_in_script", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kubelet\nspec:\n  containers:\n    - name: kubelet\n      command: [sh, -c]\n      args:\n        - exec kubelet --rotate-server-certificates=false --v=2\n",
			[]setting{{`Pod kubelet container "kubelet" --rotate-server-certificates`, 10, false}}, RotationOff},
		{"json_patch_flag", "- op: add\n  path: /machine/kubelet/extraArgs/rotate-server-certificates\n  value: \"true\"\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 3, true}}, RotationOn},
		{"json_patch_config", "- op: replace\n  path: /machine/kubelet/extraConfig\n  value:\n    serverTLSBootstrap: false\n",
			[]setting{{"machine.kubelet.extraConfig.serverTLSBootstrap", 4, false}}, RotationOff},
		{"json_patch_remove_ignored", "- op: remove\n  path: /machine/kubelet/extraArgs/rotate-server-certificates\n", nil, RotationUnknown},
		{"merge_key", "x: &args\n  rotate-server-certificates: true\nmachine:\n  kubelet:\n    extraArgs:\n      <<: *args\n",
			[]setting{{"machine.kubelet.extraArgs.rotate-server-certificates", 2, true}}, RotationOn},
		{"alias", "x: &c\n  serverTLSBootstrap: true\nmachine:\n  kubelet:\n    extraConfig: *c\n",
			[]setting{{"machine.kubelet.extraConfig.serverTLSBootstrap", 2, true}}, RotationOn},
		{"two_documents", "apiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  serverTLSBootstrap: false\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: true\n",
			[]setting{{"KubeletConfig.config.serverTLSBootstrap", 4, false}, {"KubeletConfiguration.serverTLSBootstrap", 8, true}}, RotationOn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, tc.yaml)
			if diff := cmp.Diff(settings(r), tc.want); diff != "" {
				t.Errorf("settings (-got +want):\n%s", diff)
			}
			if r.Rotation != tc.state {
				t.Errorf("Rotation = %q, want %q", r.Rotation, tc.state)
			}
			for _, f := range r.Findings {
				if f.ID == IDInvalidField {
					t.Errorf("unexpected finding %s at line %d: %s", f.ID, f.Line, f.Message)
				}
			}
		})
	}
}

// TestFiles checks the real examples in testdata, alone and together.
func TestFiles(t *testing.T) {
	tests := []struct {
		name     string
		files    []string
		rotation RotationState
		want     []string
	}{
		{"talos_docs_legacy", []string{"talos-legacy-controlplane.yaml"}, RotationOn, []string{
			"talos-patch talos-legacy-controlplane.yaml:15",
			"approver-no-san-binding talos-legacy-controlplane.yaml:68",
			"manifest-unpinned talos-legacy-controlplane.yaml:68",
			"manifest-unpinned talos-legacy-controlplane.yaml:69",
			"metrics-server-args-unknown talos-legacy-controlplane.yaml:69",
		}},
		{"worker_alone", []string{"talos-legacy-worker.yaml"}, RotationOn, []string{
			"talos-patch talos-legacy-worker.yaml:12",
			"rotation-without-approver talos-legacy-worker.yaml:16",
		}},
		{"worker_with_controlplane", []string{"talos-legacy-worker.yaml", "talos-legacy-controlplane.yaml"}, RotationOn, []string{
			"talos-patch talos-legacy-worker.yaml:12",
			"talos-patch talos-legacy-controlplane.yaml:15",
			"approver-no-san-binding talos-legacy-controlplane.yaml:68",
			"manifest-unpinned talos-legacy-controlplane.yaml:68",
			"manifest-unpinned talos-legacy-controlplane.yaml:69",
			"metrics-server-args-unknown talos-legacy-controlplane.yaml:69",
		}},
		{"talos_docs_1.14", []string{"talos-1.14-multidoc.yaml"}, RotationOn, []string{
			"talos-patch talos-1.14-multidoc.yaml:16",
			"approver-no-san-binding talos-1.14-multidoc.yaml:24",
			"manifest-unpinned talos-1.14-multidoc.yaml:24",
			"manifest-unpinned talos-1.14-multidoc.yaml:29",
			"metrics-server-args-unknown talos-1.14-multidoc.yaml:29",
		}},
		{"talos_1.14_csrguard_inline_metrics_server", []string{"talos-1.14-csrguard.yaml"}, RotationOn, []string{
			"csrguard-pinned talos-1.14-csrguard.yaml:12",
			"metrics-server-insecure-tls talos-1.14-csrguard.yaml:35",
		}},
		{"kubeadm", []string{"kubeadm-kubelet.yaml"}, RotationOn, []string{
			"rotation-without-approver kubeadm-kubelet.yaml:21",
		}},
		{"kubeadm_with_alex1989hu", []string{"kubeadm-kubelet.yaml", "alex1989hu-standalone.yaml"}, RotationOn, []string{
			"approver-no-san-binding alex1989hu-standalone.yaml:8",
			"image-unpinned alex1989hu-standalone.yaml:19",
		}},
		{"metrics_server_alone", []string{"metrics-server-components.yaml"}, RotationUnknown, []string{
			"rotation-state-unknown metrics-server-components.yaml:12",
		}},
		{"metrics_server_insecure_with_rotation", []string{"kubeadm-kubelet.yaml", "metrics-server-components.yaml", "postfinance-deployment.yaml"}, RotationOn, []string{
			"metrics-server-insecure-tls metrics-server-components.yaml:37",
			"approver-no-san-binding postfinance-deployment.yaml:25",
		}},
		{"json_patch", []string{"talos-json-patch.yaml"}, RotationOn, []string{
			"json-patch-missing-path talos-json-patch.yaml:8",
			"csrguard-pinned talos-json-patch.yaml:9",
		}},
		{"extra_config_patch", []string{"talos-extraconfig-patch.yaml"}, RotationOn, []string{
			"rotation-without-approver talos-extraconfig-patch.yaml:5",
		}},
		{"wrong_types", []string{"malformed-types.yaml"}, RotationOff, []string{
			"invalid-field malformed-types.yaml:5",
			"invalid-field malformed-types.yaml:8",
		}},
		{"empty_documents", []string{"empty-documents.yaml"}, RotationUnknown, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var files []File
			for _, name := range tc.files {
				data, err := os.ReadFile(filepath.Join("testdata", name))
				if err != nil {
					t.Fatal(err)
				}
				files = append(files, File{Name: name, Data: data})
			}
			r, err := CheckFiles(files)
			if err != nil {
				t.Fatalf("CheckFiles: %v", err)
			}
			if diff := cmp.Diff(ids(r), tc.want); diff != "" {
				t.Errorf("findings (-got +want):\n%s", diff)
			}
			if r.Rotation != tc.rotation {
				t.Errorf("Rotation = %q, want %q", r.Rotation, tc.rotation)
			}
			for _, f := range r.Findings {
				if f.Message == "" || f.Line < 1 || (f.Severity != severity.Info && len(f.Fix) == 0) {
					t.Errorf("finding %s at %s:%d lacks a message, line or fix: %+v", f.ID, f.File, f.Line, f)
				}
			}
		})
	}
}

// TestRules covers each rule both ways on small inputs.
func TestRules(t *testing.T) {
	const (
		rotationOn  = "version: v1alpha1\nmachine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: true\n"
		rotationOff = "version: v1alpha1\nmachine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.36.3\n"
	)
	manifests := func(urls ...string) string {
		return "cluster:\n  extraManifests:\n    - " + strings.Join(urls, "\n    - ") + "\n"
	}
	deployment := func(name, image string, args ...string) string {
		s := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " + name + "\n  namespace: kube-system\nspec:\n  template:\n    spec:\n      containers:\n        - name: " + name + "\n          image: " + image + "\n"
		if len(args) > 0 {
			s += "          args:\n            - " + strings.Join(args, "\n            - ") + "\n"
		}
		return s
	}
	tests := []struct {
		name string
		yaml string
		want []string // IDs with their lines
	}{
		{"rotation_no_approver", rotationOn, []string{"rotation-without-approver in.yaml:5"}},
		{"rotation_csrguard_pinned", rotationOn + manifests(buildinfo.InstallURL), []string{"csrguard-pinned in.yaml:8"}},
		{"rotation_csrguard_latest", rotationOn + manifests("https://github.com/csrguard/csrguard/releases/latest/download/install.yaml"),
			[]string{"manifest-unpinned in.yaml:8"}},
		{"rotation_csrguard_dry_run", rotationOn + "---\n" + deployment("csrguard", "ghcr.io/csrguard/csrguard:v0.1.0", "controller", "--mode=dry-run"),
			[]string{"rotation-without-approver in.yaml:5"}},
		{"rotation_csrguard_enforce_object", rotationOn + "---\n" + deployment("csrguard", "ghcr.io/csrguard/csrguard:v0.1.0", "controller"), nil},
		{"rotation_alex_pinned_tag", rotationOn + manifests("https://raw.githubusercontent.com/alex1989hu/kubelet-serving-cert-approver/v0.9.1/deploy/standalone-install.yaml"),
			[]string{"approver-no-san-binding in.yaml:8"}},
		{"alex_beside_csrguard", rotationOn + manifests(buildinfo.InstallURL, "https://raw.githubusercontent.com/alex1989hu/kubelet-serving-cert-approver/refs/tags/v0.9.1/deploy/standalone-install.yaml"),
			[]string{"csrguard-pinned in.yaml:8", "approver-no-san-binding in.yaml:9"}},
		{"rotation_talos_ccm_without_csr_controller", rotationOn + "---\n" + deployment("talos-cloud-controller-manager", "ghcr.io/siderolabs/talos-cloud-controller-manager:v1.10.1", "--controllers=cloud-node"),
			[]string{"rotation-without-approver in.yaml:5"}},
		{"rotation_talos_ccm_with_csr_controller", rotationOn + "---\n" + deployment("talos-cloud-controller-manager", "ghcr.io/siderolabs/talos-cloud-controller-manager:v1.10.1", "--controllers=cloud-node,node-csr-approval"), nil},
		{"postfinance_url", rotationOn + manifests("https://raw.githubusercontent.com/postfinance/kubelet-csr-approver/v1.2.3/deploy/k8s/deployment.yaml"),
			[]string{"approver-no-san-binding in.yaml:8"}},
		{"postfinance_no_config", deployment("kubelet-csr-approver", "postfinance/kubelet-csr-approver:v1.2.3", "-leader-election"),
			[]string{"approver-no-san-binding in.yaml:12"}},
		{"postfinance_configured_flags", deployment("kubelet-csr-approver", "postfinance/kubelet-csr-approver:v1.2.3", `-provider-regex=^node-\d+$`, "--provider-ip-prefixes=10.0.0.0/24"),
			[]string{"approver-limited-san-binding in.yaml:13"}},
		{"insecure_http", manifests("http://example.com/manifests/v1.0.0/app.yaml"), []string{"manifest-insecure-url in.yaml:3"}},
		{"unpinned_unknown_host_latest", manifests("https://example.com/app/latest/app.yaml"), []string{"manifest-unpinned in.yaml:3"}},
		{"pinned_commit", manifests("https://raw.githubusercontent.com/example/app/0123456789abcdef0123456789abcdef01234567/app.yaml"), nil},
		{"unknown_host_cannot_tell", manifests("https://example.com/app.yaml"), nil},
		{"metrics_server_insecure_rotation_on", rotationOn + "---\n" + deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "--kubelet-insecure-tls"),
			[]string{"rotation-without-approver in.yaml:5", "metrics-server-insecure-tls in.yaml:19"}},
		{"metrics_server_secure_rotation_on", rotationOn + manifests(buildinfo.InstallURL) + "---\n" + deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "--cert-dir=/tmp"),
			[]string{"csrguard-pinned in.yaml:8"}},
		{"metrics_server_secure_rotation_off", rotationOff + "---\n" + deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "--cert-dir=/tmp"),
			[]string{"metrics-server-cannot-verify-kubelets in.yaml:17"}},
		{"metrics_server_insecure_false_rotation_off", rotationOff + "---\n" + deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "--kubelet-insecure-tls=false"),
			[]string{"metrics-server-cannot-verify-kubelets in.yaml:17"}},
		{"metrics_server_insecure_rotation_off", rotationOff + "---\n" + deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "--kubelet-insecure-tls"), nil},
		{"metrics_server_ca_rotation_off", rotationOff + "---\n" + deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", "--kubelet-certificate-authority=/ca/ca.crt"), nil},
		{"metrics_server_url_rotation_off", rotationOff + manifests("https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.7.2/components.yaml"),
			[]string{"metrics-server-args-unknown in.yaml:7"}},
		{"metrics_server_image_latest", deployment("metrics-server", "registry.k8s.io/metrics-server/metrics-server", "--kubelet-insecure-tls"),
			[]string{"rotation-state-unknown in.yaml:2", "image-unpinned in.yaml:11"}},
		{"inline_manifest_alex", rotationOn + "cluster:\n  inlineManifests:\n    - name: approver\n      contents: |\n        apiVersion: apps/v1\n        kind: Deployment\n        metadata:\n          name: kubelet-serving-cert-approver\n        spec:\n          template:\n            spec:\n              containers:\n                - name: approver\n                  image: ghcr.io/alex1989hu/kubelet-serving-cert-approver:v0.9.1\n",
			[]string{"approver-no-san-binding in.yaml:11"}},
		{"kube_inline_manifest_config_bad_yaml", "apiVersion: v1alpha1\nkind: KubeInlineManifestConfig\nname: broken\nmanifest: |\n  a: b\n  c: [\n",
			[]string{"invalid-field in.yaml:6"}},
		{"list_of_objects", "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: kubelet-serving-cert-approver\n",
			[]string{"approver-no-san-binding in.yaml:5"}},
		{"namespace_does_not_name_the_component", rotationOn + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: metrics-server\n  namespace: csrguard-system\n",
			[]string{"rotation-without-approver in.yaml:5"}},
		{"deployment_list", rotationOn + "---\napiVersion: apps/v1\nkind: DeploymentList\nitems:\n  - apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: csrguard\n",
			nil},
		{"unknown_document", "foo: bar\n---\n- 1\n- 2\n", []string{"unknown-document in.yaml:1", "unknown-document in.yaml:3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(ids(check(t, tc.yaml)), tc.want); diff != "" {
				t.Errorf("findings (-got +want):\n%s", diff)
			}
		})
	}
}

// TestInvalidFields: wrong types are findings naming the key and its line.
func TestInvalidFields(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		text string
	}{
		{"extra_args_list", "machine:\n  kubelet:\n    extraArgs:\n      - rotate-server-certificates=true\n", 3, "machine.kubelet.extraArgs must be a mapping, got a list"},
		{"extra_manifests_string", "cluster:\n  extraManifests: https://example.com/a.yaml\n", 2, `cluster.extraManifests must be a list of URLs, got the string "https://example.com/a.yaml"`},
		{"extra_manifests_item_mapping", "cluster:\n  extraManifests:\n    - url: https://example.com/a.yaml\n", 3, "cluster.extraManifests[0] must be a URL, got a mapping"},
		{"extra_manifests_not_url", "cluster:\n  extraManifests:\n    - deploy/app.yaml\n", 3, `"deploy/app.yaml" is not an http(s) URL`},
		{"kubelet_not_mapping", "machine:\n  kubelet: true\n", 2, "machine.kubelet must be a mapping, got the boolean true"},
		{"flag_not_boolean", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: yes\n", 4, `"yes" is not a boolean`},
		{"flag_mapping", "apiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs:\n  rotate-server-certificates:\n    value: true\n", 4, "must be a string or a list of strings, got a mapping"},
		{"flag_empty", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates:\n", 4, "has no value"},
		{"config_quoted_true", "apiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  serverTLSBootstrap: \"true\"\n", 4, `must be a boolean (true or false, unquoted), got the string "true"`},
		{"talos_yes_is_a_string", "machine:\n  kubelet:\n    extraConfig:\n      serverTLSBootstrap: yes\n", 4, `got the string "yes"`},
		{"kubelet_configuration_number", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nserverTLSBootstrap: 1\n", 3, "got the number 1"},
		{"duplicate_key", "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: false\n      rotate-server-certificates: true\n", 5, `duplicate key "rotate-server-certificates" (first at line 4)`},
		{"external_manifest_without_url", "apiVersion: v1alpha1\nkind: KubeExternalManifestConfig\nname: x\n", 2, `KubeExternalManifestConfig "x" has no url`},
		{"inline_contents_list", "cluster:\n  inlineManifests:\n    - name: x\n      contents: [a]\n", 4, "must be a string holding YAML manifests, got a list"},
		{"kubeadm_extra_args_string", "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs: rotate\n", 4, "must be a mapping (kubeadm v1beta3) or a list of {name, value}"},
		{"kubelet_config_beside_machine_kubelet", "version: v1alpha1\nmachine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.37.0\n---\napiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  serverTLSBootstrap: true\n", 7, "a KubeletConfig document beside machine.kubelet (line 3)"},
		{"container_args_mapping", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      args:\n        - a: b\n", 9, "args must be a list of strings, got a list holding a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, tc.yaml)
			for _, f := range r.Findings {
				if f.ID == IDInvalidField && f.Severity == severity.Error && f.Line == tc.line && strings.Contains(f.Message, tc.text) && len(f.Fix) > 0 {
					return
				}
			}
			t.Errorf("want an invalid-field error at line %d containing %q; got %+v", tc.line, tc.text, r.Findings)
		})
	}
}

// TestMalformed: what is not YAML is an error naming the file and the line.
func TestMalformed(t *testing.T) {
	indent, err := os.ReadFile(filepath.Join("testdata", "malformed-indent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		line int
		text string
	}{
		{"bad_indentation_file", string(indent), 5, "did not find expected key"},
		{"mapping_value_first_line", "a: b: c\n", 1, "mapping values are not allowed in this context"},
		{"unclosed_flow", "a: [1, 2\nb: 3\n", 2, "did not find expected ',' or ']'"},
		{"sequence_in_mapping", "a: 1\nb: 2\n- c\n", 3, "did not find expected key"},
		{"unterminated_quote", "x: 1\ny: \"unterminated\n", 2, "found unexpected end of stream"},
		{"tab_indent", "a:\n\tb: 1\n", 2, "found character that cannot start any token"},
		{"unknown_anchor", "a: 1\nb: *nope\n", 2, "unknown anchor 'nope' referenced"},
		{"control_character", "a: 1\nb: \x01\n", 2, "control characters are not allowed"},
		{"invalid_utf8", "a: 1\nb: \xff\xfe\n", 2, "invalid"},
		{"second_document", "a: 1\n---\nb: [\n", 3, "did not find expected node content"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check("bad.yaml", []byte(tc.data))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Check = %v, want a *ParseError", err)
			}
			if pe.File != "bad.yaml" || pe.Line != tc.line || !strings.Contains(pe.Message, tc.text) {
				t.Errorf("ParseError = %q (line %d), want bad.yaml line %d containing %q", pe, pe.Line, tc.line, tc.text)
			}
			if want := fmt.Sprintf("bad.yaml:%d: ", tc.line); !strings.HasPrefix(pe.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", pe.Error(), want)
			}
		})
	}
}

func TestHugeFile(t *testing.T) {
	data := []byte("a: " + strings.Repeat("x", MaxFileSize) + "\n")
	_, err := Check("huge.yaml", data)
	var pe *ParseError
	if !errors.As(err, &pe) || !strings.Contains(pe.Error(), "huge.yaml: ") || !strings.Contains(pe.Error(), "10 MiB") {
		t.Errorf("Check(huge) = %v, want a ParseError naming the file and the limit", err)
	}
}

// TestAliasBomb: aliases repeating a node cannot make a check explode; the
// file is refused instead.
func TestAliasBomb(t *testing.T) {
	var list strings.Builder
	list.WriteString("args: &big [--rotate-server-certificates")
	list.WriteString(strings.Repeat(", x", 20000))
	list.WriteString("]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n")
	list.WriteString(strings.Repeat("    - args: *big\n", 20000))
	merge := "m0: &m0 {rotate-server-certificates: true}\n"
	for i := 1; i < 10; i++ {
		merge += fmt.Sprintf("m%d: &m%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*m%d, ", i-1), 20), ", "))
	}
	merge += "machine:\n  kubelet:\n    extraArgs: *m9\n"
	for name, data := range map[string]string{"list": list.String(), "merge": merge} {
		t.Run(name, func(t *testing.T) {
			_, err := Check("bomb.yaml", []byte(data))
			if err == nil || !strings.Contains(err.Error(), "excessive aliasing") {
				t.Errorf("Check(bomb) = %v, want excessive aliasing", err)
			}
		})
	}
}

func TestClassifyURL(t *testing.T) {
	tests := []struct {
		url                   string
		component, pin, ref   string
		insecure, invalid     bool
		pinnedFormContainsTag bool
	}{
		{"https://raw.githubusercontent.com/alex1989hu/kubelet-serving-cert-approver/main/deploy/standalone-install.yaml", servingcsr.ApproverAlex1989hu, unpinned, "main", false, false, true},
		{"https://raw.githubusercontent.com/alex1989hu/kubelet-serving-cert-approver/refs/heads/main/deploy/ha-install.yaml", servingcsr.ApproverAlex1989hu, unpinned, "main", false, false, true},
		{"https://raw.githubusercontent.com/alex1989hu/kubelet-serving-cert-approver/refs/tags/v0.9.1/deploy/ha-install.yaml", servingcsr.ApproverAlex1989hu, pinned, "v0.9.1", false, false, true},
		{"https://raw.githubusercontent.com/example/app/release-1.2/app.yaml", "", unpinned, "release-1.2", false, false, true},
		{"https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/components.yaml", ComponentMetricsServer, unpinned, "latest", false, false, true},
		{"https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.7.2/components.yaml", ComponentMetricsServer, pinned, "v0.7.2", false, false, false},
		{buildinfo.InstallURL, servingcsr.ApproverCSRGuard, pinned, "v0.1.0", false, false, false},
		{"https://github.com/csrguard/csrguard/blob/main/deploy/install.yaml", servingcsr.ApproverCSRGuard, unpinned, "main", false, false, true},
		{"https://gitlab.com/group/app/-/raw/master/app.yaml", "", unpinned, "master", false, false, true},
		{"https://git.example.com/org/app/raw/branch/stable/app.yaml", "", unpinned, "stable", false, false, true},
		{"https://example.com/talos/csr-approver.yaml", "", "", "", false, false, false},
		{"http://example.com/app/v1.0.0/app.yaml", "", "", "", true, false, false},
		{"ftp://example.com/a.yaml", "", "", "", false, true, false},
		{"not a url", "", "", "", false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got := classifyURL(tc.url)
			if got.component != tc.component || got.pin != tc.pin || got.ref != tc.ref || got.insecure != tc.insecure || (got.invalid != "") != tc.invalid {
				t.Errorf("classifyURL = %+v, want component %q pin %q ref %q insecure %v invalid %v", got, tc.component, tc.pin, tc.ref, tc.insecure, tc.invalid)
			}
			if tc.pinnedFormContainsTag != strings.Contains(got.pinnedForm, "<tag>") {
				t.Errorf("pinnedForm = %q, want <tag> in it: %v", got.pinnedForm, tc.pinnedFormContainsTag)
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for image, want := range map[string]bool{
		"ghcr.io/alex1989hu/kubelet-serving-cert-approver:main": true,
		"registry.k8s.io/metrics-server/metrics-server":         true,
		"localhost:5000/metrics-server":                         true,
		"metrics-server:latest":                                 true,
		"registry.k8s.io/metrics-server/metrics-server:v0.7.2":  false,
		"localhost:5000/metrics-server:v0.7.2":                  false,
		"ghcr.io/csrguard/csrguard@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": false,
	} {
		if _, got := imageTag(image); got != want {
			t.Errorf("imageTag(%q) moving = %v, want %v", image, got, want)
		}
	}
}

func TestCheckFilesErrors(t *testing.T) {
	_, err := CheckFiles([]File{{Name: "a.yaml", Data: []byte("a: [\n")}, {Name: "ok.yaml", Data: []byte("a: 1\n")}, {Name: "b.yaml", Data: []byte("b: c: d\n")}})
	if err == nil || !strings.Contains(err.Error(), "a.yaml:") || !strings.Contains(err.Error(), "b.yaml:1:") {
		t.Errorf("CheckFiles = %v, want errors naming a.yaml and b.yaml:1", err)
	}
}
