package packaging

import (
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTalosPatches: both Talos patches turn kubelet serving-certificate
// rotation on and install the release the chart pins, in the spelling each
// Talos config style reads.
func TestTalosPatches(t *testing.T) {
	url := releaseURL(appVersion(t))

	t.Run("legacy", func(t *testing.T) {
		docs := readYAML(t, talosDir+"/legacy.patch.yaml")
		if len(docs) != 1 {
			t.Fatalf("want one document, got %d", len(docs))
		}
		if got := nested[bool](t, docs[0], "machine", "kubelet", "extraArgs", "rotate-server-certificates"); !got {
			t.Error("machine.kubelet.extraArgs.rotate-server-certificates is not true")
		}
		manifests := nested[[]any](t, docs[0], "cluster", "extraManifests")
		if diff := cmp.Diff(manifests, []any{url}); diff != "" {
			t.Errorf("cluster.extraManifests (-got +want):\n%s", diff)
		}
	})

	t.Run("multidoc", func(t *testing.T) {
		docs := readYAML(t, talosDir+"/multidoc.patch.yaml")
		if len(docs) != 2 {
			t.Fatalf("want two documents, got %d", len(docs))
		}
		kubelet, manifest := docs[0], docs[1]
		if kubelet["apiVersion"] != "v1alpha1" || kubelet["kind"] != "KubeletConfig" {
			t.Errorf("first document is %v %v, want v1alpha1 KubeletConfig", kubelet["apiVersion"], kubelet["kind"])
		}
		if got := nested[bool](t, kubelet, "extraArgs", "rotate-server-certificates"); !got {
			t.Error("KubeletConfig extraArgs.rotate-server-certificates is not true")
		}
		want := map[string]any{"apiVersion": "v1alpha1", "kind": "KubeExternalManifestConfig", "name": "csrguard", "url": url}
		if diff := cmp.Diff(manifest, want); diff != "" {
			t.Errorf("KubeExternalManifestConfig (-got +want):\n%s", diff)
		}
	})

	// Every release URL in the Talos directory and the install docs is the
	// pinned one, so a version bump cannot leave a stale URL behind.
	release := regexp.MustCompile(`https://github\.com/csrguard/csrguard/releases/download/v[^/\s]+/install\.yaml`)
	for _, f := range []string{talosDir + "/legacy.patch.yaml", talosDir + "/multidoc.patch.yaml", talosDir + "/README.md", repoRoot + "/README.md"} {
		found := release.FindAllString(readFile(t, f), -1)
		if len(found) == 0 {
			t.Errorf("%s names no release URL", f)
		}
		for _, u := range found {
			if u != url {
				t.Errorf("%s: release URL %s, want %s", f, u, url)
			}
		}
	}
}
