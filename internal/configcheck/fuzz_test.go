package configcheck

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheck: no input makes Check panic; a file that parses gets findings
// that each name it and a line ≥ 1, and one that does not gets a ParseError
// naming it.
func FuzzCheck(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed corpus in testdata: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"---\n---\n",
		"- op: add\n  path: /cluster/inlineManifests/-\n  value:\n    name: x\n    contents: |\n      apiVersion: v1\n      kind: List\n      items: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: metrics-server}}]\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    - name: rotate-server-certificates\n",
		"a: &a {<<: *a}\n",
		"machine: &m\n  kubelet:\n    extraArgs: *m\n",
		"x: !!binary aGVsbG8=\nmachine: {kubelet: {extraArgs: {rotate-server-certificates: !!int 1}}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Check("fuzz.yaml", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz.yaml" || pe.Line < 0 {
				t.Fatalf("Check error %v (%T) is not a ParseError naming the file", err, err)
			}
			return
		}
		for _, x := range r.Findings {
			if x.File != "fuzz.yaml" || x.Line < 1 || x.ID == "" || x.Message == "" {
				t.Fatalf("finding without file, line, ID or message: %+v", x)
			}
			if _, err := x.Severity.MarshalText(); err != nil {
				t.Fatalf("finding %s: %v", x.ID, err)
			}
		}
		for _, d := range r.Documents {
			if d.Line < 1 {
				t.Fatalf("document without a line: %+v", d)
			}
		}
		for _, s := range r.Settings {
			if s.Line < 1 {
				t.Fatalf("setting without a line: %+v", s)
			}
		}
		for _, m := range r.Manifests {
			if m.Line < 1 {
				t.Fatalf("manifest without a line: %+v", m)
			}
		}
		if n := r.Summary.Error + r.Summary.Warning + r.Summary.Info; n != len(r.Findings) {
			t.Fatalf("summary counts %d findings, there are %d", n, len(r.Findings))
		}
		switch r.Rotation {
		case RotationOn, RotationOff, RotationUnknown:
		default:
			t.Fatalf("Rotation = %q", r.Rotation)
		}
	})
}
