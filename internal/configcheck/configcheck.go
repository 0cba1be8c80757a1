// Package configcheck checks Talos machine configuration and kubeadm
// KubeletConfiguration files offline for the unsafe change behind the
// incident csrguard exists for: kubelet serving-certificate rotation turned
// on with nothing to approve the kubelets' CSRs, approver manifests fetched
// from moving branches or known not to bind SANs to nodes, and metrics-server
// configured against the kubelets' certificate mode.
//
// It is pure: bytes in, findings out. It reads no files, contacts no cluster
// and fetches no URL; what a manifest URL installs is judged from the URL
// alone. It owns no flags and no output format (package cli does).
package configcheck

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/csrguard/csrguard/internal/severity"
)

// MaxFileSize is the largest file Check reads: machine configs and manifests
// are kilobytes, so anything this big is a mistake (or an attack).
const MaxFileSize = 10 << 20

// The finding IDs. They are stable: scripts match on them.
const (
	// IDRotationWithoutApprover: rotation is on, and no file installs an
	// approver (error).
	IDRotationWithoutApprover = "rotation-without-approver"
	// IDApproverNoSANBinding: the approver installed approves SANs that do
	// not belong to the requesting node (warning).
	IDApproverNoSANBinding = "approver-no-san-binding"
	// IDApproverLimitedSANBinding: kubelet-csr-approver with a provider
	// regex and IP prefixes: SANs are bounded, but not to the node (info).
	IDApproverLimitedSANBinding = "approver-limited-san-binding"
	// IDCSRGuardPinned: csrguard is installed from a release (info).
	IDCSRGuardPinned = "csrguard-pinned"
	// IDManifestUnpinned: a manifest URL follows a branch or "latest" (warning).
	IDManifestUnpinned = "manifest-unpinned"
	// IDManifestInsecureURL: a manifest is fetched over plain http (warning).
	IDManifestInsecureURL = "manifest-insecure-url"
	// IDImageUnpinned: an approver's or metrics-server's image has no tag, a
	// branch tag or "latest" (warning).
	IDImageUnpinned = "image-unpinned"
	// IDMetricsServerInsecureTLS: metrics-server skips verifying kubelets
	// although rotation gives them CA-signed certificates (warning).
	IDMetricsServerInsecureTLS = "metrics-server-insecure-tls"
	// IDMetricsServerCannotVerify: rotation is off, so kubelets serve
	// self-signed certificates, and metrics-server verifies them (error).
	IDMetricsServerCannotVerify = "metrics-server-cannot-verify-kubelets"
	// IDMetricsServerArgsUnknown: metrics-server comes from a URL whose
	// arguments cannot be seen offline (info).
	IDMetricsServerArgsUnknown = "metrics-server-args-unknown"
	// IDRotationStateUnknown: metrics-server is configured but no kubelet
	// configuration is among the files (info).
	IDRotationStateUnknown = "rotation-state-unknown"
	// IDInvalidField: a field Talos, kubeadm or the kubelet would reject: a
	// wrong type, an unparsable boolean, a duplicate key (error).
	IDInvalidField = "invalid-field"
	// IDUnknownDocument: a YAML document of no kind this package reads (info).
	IDUnknownDocument = "unknown-document"
	// IDManifestNotApplied: a manifest in a worker's machine config, which
	// Talos does not apply (info).
	IDManifestNotApplied = "manifest-not-applied"
	// IDTalosPatch: names the csrguard patch that a whole Talos machine
	// config's style takes (info).
	IDTalosPatch = "talos-patch"
	// IDJSONPatchMissingPath: a Talos JSON patch adds under a path that
	// generated configs do not have, so Talos rejects it (warning).
	IDJSONPatchMissingPath = "json-patch-missing-path"
)

// Finding is one thing found in a file, with where it is and what to do.
type Finding struct {
	// ID is a stable kebab-case identifier, one of the ID* constants.
	ID string `json:"id"`
	// Severity is severity.Info, severity.Warning or severity.Error.
	Severity severity.Level `json:"severity"`
	// File and Line (1-based) locate the key the finding is about.
	File string `json:"file"`
	Line int    `json:"line"`
	// Message says what is wrong and what it breaks, in one sentence or two.
	Message string `json:"message"`
	// Fix lists the steps to take, in order. A step may span several lines
	// (a YAML snippet); its first line says what it is.
	Fix []string `json:"fix"`
}

// Document is one YAML document recognised in a file.
type Document struct {
	File string `json:"file"`
	// Line is the 1-based line where the document's content starts.
	Line int `json:"line"`
	// Format is one of the Format* constants.
	Format string `json:"format"`
	// Kind is the document's kind (KubeletConfig, KubeletConfiguration,
	// Deployment, …); empty for Talos v1alpha1 configs and JSON patches.
	Kind string `json:"kind,omitempty"`
	// Name is the object's namespace/name or the Talos document's name.
	Name string `json:"name,omitempty"`
}

// The document formats.
const (
	// FormatTalosV1Alpha1 is the legacy Talos machine config (version:
	// v1alpha1, machine:, cluster:) or a strategic-merge patch of it.
	FormatTalosV1Alpha1 = "talos-v1alpha1"
	// FormatTalosJSONPatch is a Talos JSON (RFC 6902) patch of the legacy config.
	FormatTalosJSONPatch = "talos-json-patch"
	// FormatTalosDocument is a Talos ≥ 1.14 typed document (apiVersion:
	// v1alpha1, kind: KubeletConfig, KubeExternalManifestConfig, …).
	FormatTalosDocument = "talos-document"
	// FormatKubeadm is a kubeadm InitConfiguration, JoinConfiguration or
	// ClusterConfiguration.
	FormatKubeadm = "kubeadm"
	// FormatKubelet is a KubeletConfiguration (kubelet.config.k8s.io).
	FormatKubelet = "kubelet"
	// FormatKubernetes is a Kubernetes object (a manifest).
	FormatKubernetes = "kubernetes"
	// FormatUnknown is anything else; it is ignored.
	FormatUnknown = "unknown"
)

// Setting is one place that sets kubelet serving-certificate rotation.
type Setting struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// Path names the setting, e.g. machine.kubelet.extraArgs.rotate-server-certificates.
	Path string `json:"path"`
	// Value is the value as written.
	Value string `json:"value"`
	// On reports whether it turns rotation on.
	On bool `json:"on"`

	format string // the Format* of the document it is in, for the fix
}

// RotationState is whether the files turn kubelet serving-certificate rotation on.
type RotationState string

// The rotation states.
const (
	// RotationOn: some file turns rotation on.
	RotationOn RotationState = "on"
	// RotationOff: the files configure kubelets, and none turns rotation on.
	RotationOff RotationState = "off"
	// RotationUnknown: no kubelet configuration among the files.
	RotationUnknown RotationState = "unknown"
)

// ComponentMetricsServer is metrics-server, which a manifest may install
// beside an approver (named by servingcsr's Approver* constants).
const ComponentMetricsServer = "metrics-server"

// Manifest is something the files install into the cluster: a manifest URL
// (Talos cluster.extraManifests, KubeExternalManifestConfig) or a workload
// (Deployment, DaemonSet, StatefulSet, Pod) in a manifest, inline in a Talos
// config or not.
type Manifest struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// Source is "url" or "object".
	Source string `json:"source"`
	// URL is the manifest URL (Source "url").
	URL string `json:"url,omitempty"`
	// Name is the KubeExternalManifestConfig's or inline manifest's name, or
	// the workload's Kind namespace/name.
	Name string `json:"name,omitempty"`
	// Component is one of servingcsr's Approver* constants or ComponentMetricsServer, or empty when unknown.
	Component string `json:"component,omitempty"`
	// Pin says whether a URL is "pinned" (a release tag or commit) or
	// "unpinned" (a branch, "latest"); empty when it cannot be told.
	Pin string `json:"pin,omitempty"`
	// Ref is the tag, commit or branch a URL names, when it names one.
	Ref string `json:"ref,omitempty"`

	format string    // the Format* of the document that installs it, for the fixes
	url    urlInfo   // what the URL tells (Source "url")
	obj    *workload // the workload's details (Source "object")
}

// Summary counts the findings by severity.
type Summary struct {
	Error   int `json:"error"`
	Warning int `json:"warning"`
	Info    int `json:"info"`
}

// Result is what Check and CheckFiles found.
type Result struct {
	// Documents are the YAML documents read, in file order; empty ones are left out.
	Documents []Document `json:"documents"`
	// Rotation is whether the files turn kubelet serving-certificate rotation on,
	// and Settings every place they set it.
	Rotation RotationState `json:"rotation"`
	Settings []Setting     `json:"settings"`
	// Manifests are what the files install: URLs and workloads.
	Manifests []Manifest `json:"manifests"`
	// Findings are sorted by file (in the order given), line, then most
	// severe first.
	Findings []Finding `json:"findings"`
	Summary  Summary   `json:"summary"`
}

// File is one named input of CheckFiles.
type File struct {
	// Name is how findings name the file: its path, or "<stdin>".
	Name string
	Data []byte
}

// ParseError is a file that is not valid YAML, or too large to read.
type ParseError struct {
	File string
	// Line is the 1-based line the YAML parser names; 0 when it names none.
	Line int
	// Message is the parser's message, without its "yaml: line N:" prefix.
	Message string
}

// Error returns "FILE:LINE: MESSAGE", like a compiler.
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Message)
}

// Check checks one file, which may hold several YAML documents. Approvers
// configured in other files are not seen: use CheckFiles for a Talos config
// and its patches.
func Check(name string, data []byte) (Result, error) {
	return CheckFiles([]File{{Name: name, Data: data}})
}

// CheckFiles checks files as one configuration: an approver installed by one
// file satisfies rotation turned on in another, as with a Talos control-plane
// config, a worker config and their patches. A file that is not valid YAML
// or larger than MaxFileSize makes it fail with a *ParseError (joined with
// errors.Join when several do), since findings about the others could rest
// on what that file holds.
func CheckFiles(files []File) (Result, error) {
	var (
		s    scan
		errs []error
	)
	order := map[string]int{}
	for i, f := range files {
		if _, ok := order[f.Name]; !ok {
			order[f.Name] = i
		}
		if err := s.file(f.Name, f.Data); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Result{}, errors.Join(errs...)
	}
	findings := slices.Concat(s.findings, evaluate(&s))
	sort.SliceStable(findings, func(i, j int) bool {
		a, b := findings[i], findings[j]
		if a.File != b.File {
			return order[a.File] < order[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		return a.ID < b.ID
	})
	// A node that aliases repeat is read once per use; report it once.
	findings = slices.CompactFunc(findings, func(a, b Finding) bool {
		return a.ID == b.ID && a.File == b.File && a.Line == b.Line && a.Message == b.Message
	})
	r := Result{
		Documents: nonNil(s.docs), Rotation: s.rotationState(), Settings: nonNil(s.settings),
		Manifests: nonNil(s.manifests), Findings: nonNil(findings),
	}
	for i, f := range r.Findings {
		if f.Fix == nil {
			r.Findings[i].Fix = []string{}
		}
		switch f.Severity {
		case severity.Error:
			r.Summary.Error++
		case severity.Warning:
			r.Summary.Warning++
		default:
			r.Summary.Info++
		}
	}
	return r, nil
}

// nonNil returns s, or an empty slice for nil, so JSON shows [] not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
