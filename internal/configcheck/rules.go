package configcheck

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/csrguard/csrguard/internal/buildinfo"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/severity"
)

// The patches in deploy/talos, one per Talos config style: what decides is
// where a config configures the kubelet, not the Talos version (an upgraded
// cluster keeps its legacy-style config).
const (
	legacyPatch   = "deploy/talos/legacy.patch.yaml"
	multidocPatch = "deploy/talos/multidoc.patch.yaml"
)

// talosLegacySnippet installs csrguard through a legacy-style (v1alpha1)
// machine config, as a strategic-merge patch or in the config itself.
var talosLegacySnippet = "cluster:\n  extraManifests:\n    - " + buildinfo.InstallURL

// talosDocumentSnippet installs csrguard through a multi-document config.
var talosDocumentSnippet = "apiVersion: v1alpha1\nkind: KubeExternalManifestConfig\nname: csrguard\nurl: " + buildinfo.InstallURL

// installFix is the step that installs csrguard, in the form of the
// document format at hand.
func installFix(format, why string) string {
	switch format {
	case FormatTalosV1Alpha1, FormatTalosJSONPatch:
		return why + ". In the control-plane machine config, legacy style (the kubelet under machine.kubelet; " + legacyPatch + " carries this and the rotation flag; extraManifests are applied when the cluster bootstraps):\n" + talosLegacySnippet
	case FormatTalosDocument:
		return why + ". Add this document to the control-plane machine config, multi-document style (the kubelet in a KubeletConfig document; " + multidocPatch + " carries this and the rotation flag):\n" + talosDocumentSnippet
	}
	return why + ": kubectl apply --server-side -f " + buildinfo.InstallURL + "\n" +
		"or: helm install csrguard " + buildinfo.HelmChart + " --namespace csrguard --create-namespace"
}

// togetherFix says how to check the files that configure an approver along.
func togetherFix(format string) string {
	switch format {
	case FormatTalosV1Alpha1, FormatTalosJSONPatch, FormatTalosDocument:
		return "If an approver is configured in another file (the control-plane config, a patch), check the files together: csrguard check-config controlplane.yaml worker.yaml patch.yaml"
	}
	return "If the approver is installed from its own manifests, check them together with this file: csrguard check-config kubelet-config.yaml install.yaml (a Helm chart: helm template … | csrguard check-config kubelet-config.yaml -)"
}

// approves reports whether m installs something that approves kubelet-serving
// CSRs, and for csrguard whether its mode is one that approves.
func (m Manifest) approves() (approver bool, why string) {
	switch m.Component {
	case servingcsr.ApproverAlex1989hu, servingcsr.ApproverPostfinance:
		return true, ""
	case servingcsr.ApproverCSRGuard:
		if m.obj == nil {
			return true, ""
		}
		for _, ct := range m.obj.containers {
			if mode, _, ok := ct.flag("mode", true); ok && mode == "dry-run" {
				return false, fmt.Sprintf("csrguard (%s:%d) runs with --mode=dry-run, which approves nothing", m.File, m.Line)
			}
		}
		return true, ""
	case servingcsr.ApproverTalosCCM:
		if m.obj == nil {
			return false, ""
		}
		for _, ct := range m.obj.containers {
			for _, t := range ct.tokens {
				if strings.Contains(t.value, "node-csr-approval") {
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("talos-cloud-controller-manager (%s:%d) does not enable its node-csr-approval controller", m.File, m.Line)
	}
	return false, ""
}

// evaluate turns what the files configure into findings.
func evaluate(s *scan) []Finding {
	var out []Finding
	state := s.rotationState()
	var notes []string
	approved, csrguard := false, false
	for _, m := range s.manifests {
		ok, why := m.approves()
		if why != "" {
			notes = append(notes, why)
		}
		approved = approved || ok
		csrguard = csrguard || m.Component == servingcsr.ApproverCSRGuard && ok
	}
	for _, m := range s.workerManifests {
		if ok, _ := m.approves(); ok {
			notes = append(notes, fmt.Sprintf("%s (%s:%d) is in a worker's config, whose manifests Talos does not apply", m.Component, m.File, m.Line))
		}
	}
	if state != RotationOn || !csrguard {
		for _, tc := range s.configs {
			out = append(out, talosPatch(tc))
		}
	}
	if state == RotationOn && !approved {
		for _, st := range s.settings {
			if st.On {
				out = append(out, rotationWithoutApprover(st, notes))
			}
		}
	}
	for _, m := range s.manifests {
		out = append(out, manifestFindings(m, state, s.kubeletFormat, csrguard)...)
	}
	return out
}

// talosPatch names the patch in deploy/talos that a whole machine config
// takes, by its style: each patch is rejected by a config of the other.
func talosPatch(tc talosConfig) Finding {
	f := Finding{ID: IDTalosPatch, Severity: severity.Info, File: tc.file, Line: tc.line}
	patch := legacyPatch
	switch tc.style {
	case FormatTalosV1Alpha1:
		f.Message = "This is a legacy-style Talos machine config: the kubelet is configured under machine.kubelet, as in every config generated before Talos 1.14 (an upgrade keeps the style). " +
			"To turn rotation on and install csrguard, patch it with " + legacyPatch + "; Talos rejects " + multidocPatch + " on it " +
			`(Talos 1.14: "kubelet config is already set in v1alpha1 config (.machine.kubelet)"; before 1.14: "KubeletConfig" "v1alpha1": not registered)`
	case FormatTalosDocument:
		patch = multidocPatch
		f.Message = "This is a multi-document Talos machine config: the kubelet is configured by a KubeletConfig document. " +
			"To turn rotation on and install csrguard, patch it with " + multidocPatch + "; Talos rejects " + legacyPatch + " on it " +
			"(\"kubelet config is already set in v1alpha1 config (.machine.kubelet)\")"
	}
	f.Fix = []string{"Patch every node's config with " + patch + ": in a running cluster only after csrguard is installed and ready (deploy/talos/README.md, \"Existing cluster\")."}
	return f
}

func rotationWithoutApprover(st Setting, notes []string) Finding {
	msg := st.Path + " turns kubelet serving-certificate rotation on, but none of the files installs an approver. " +
		"Kubernetes never approves kubelet-serving CSRs, so after the next kubelet restart every node's CSR stays Pending, " +
		"and kubectl logs/exec/port-forward and metrics-server fail with \"remote error: tls: internal error\""
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	return Finding{
		ID: IDRotationWithoutApprover, Severity: severity.Error, File: st.File, Line: st.Line, Message: msg,
		Fix: []string{
			installFix(st.format, "Install csrguard, which approves only SANs that are the requesting Node's own addresses, from a pinned release"),
			togetherFix(st.format),
			"Before applying the change: csrguard preflight, against the cluster, says whether every node would get its certificate.",
		},
	}
}

// manifestFindings are the findings about one manifest URL or workload.
func manifestFindings(m Manifest, state RotationState, kubeletFormat string, csrguard bool) []Finding {
	var out []Finding
	add := func(id string, sev severity.Level, line int, msg string, fix ...string) {
		out = append(out, Finding{ID: id, Severity: sev, File: m.File, Line: max(line, 1), Message: msg, Fix: fix})
	}
	what := m.Component
	if what == "" {
		what = "manifest"
	}

	// Where it comes from.
	if m.Source == "url" {
		if m.url.insecure {
			add(IDManifestInsecureURL, severity.Warning, m.Line, fmt.Sprintf("%s is fetched over plain http: anyone on the network path can change what the cluster installs", m.URL),
				"Use an https URL.")
		}
		if m.Pin == unpinned {
			moving := fmt.Sprintf("branch %q", m.Ref)
			if strings.EqualFold(m.Ref, "latest") {
				moving = "the latest release"
			}
			fix := "Pin it to a release tag or a commit"
			switch {
			case m.Component == servingcsr.ApproverCSRGuard:
				fix += ": " + buildinfo.InstallURL
			case m.url.pinnedForm != "":
				fix += ": " + m.url.pinnedForm + ", <tag> a release"
			}
			if m.Component == servingcsr.ApproverAlex1989hu {
				fix += "; better, replace it with csrguard (see " + IDApproverNoSANBinding + ")"
			}
			add(IDManifestUnpinned, severity.Warning, m.Line,
				fmt.Sprintf("%s follows %s: what it installs changes whenever that moves, and Talos applies it again whenever a cluster is bootstrapped from this config", m.URL, moving),
				fix+".")
		}
	}
	if m.obj != nil && m.Component != "" {
		for _, ct := range m.obj.containers {
			if tag, moving := imageTag(ct.image); ct.image != "" && moving {
				add(IDImageUnpinned, severity.Warning, ct.imageLine, fmt.Sprintf("%s's image %s follows the moving tag %q: any pod restart may run different code", what, ct.image, tag),
					"Pin the image to a release tag or a digest.")
			}
		}
	}

	// What it does.
	switch m.Component {
	case servingcsr.ApproverCSRGuard:
		if m.Source == "url" && m.Pin == pinned {
			add(IDCSRGuardPinned, severity.Info, m.Line, fmt.Sprintf("csrguard is installed from release %s: it approves only SANs that are the requesting Node's own addresses", m.Ref))
		}
	case servingcsr.ApproverAlex1989hu:
		msg := "kubelet-serving-cert-approver (alex1989hu) approves every kubelet-serving CSR a node files for itself without checking its SANs against the Node's addresses: " +
			"a compromised node can get a certificate for another node's address or for kubernetes.default.svc, signed by a CA pods may trust"
		if csrguard {
			msg += ". It runs beside csrguard and approves what csrguard would deny: remove it"
		}
		add(IDApproverNoSANBinding, severity.Warning, m.Line, msg,
			installFix(m.format, "Replace it with csrguard, which approves only SANs that are the requesting Node's own addresses"),
			"Remove kubelet-serving-cert-approver from the config, and from a running cluster: kubectl delete -f "+alexURL(m))
	case servingcsr.ApproverPostfinance:
		out = append(out, postfinanceFindings(m)...)
	case ComponentMetricsServer:
		out = append(out, metricsServerFindings(m, state, kubeletFormat)...)
	}
	return out
}

// what names m for a message: its component, or "manifest", and its URL or
// name.
func (m Manifest) what() string {
	what := m.Component
	if what == "" {
		what = "manifest"
	}
	if m.Source == "url" {
		return what + " (" + m.URL + ")"
	}
	return what + " (" + m.Name + ")"
}

// alexURL is the manifest that installed kubelet-serving-cert-approver.
func alexURL(m Manifest) string {
	if m.URL != "" {
		return shellQuote(m.URL)
	}
	return "<the manifest that installed it>"
}

// postfinanceFindings judges kubelet-csr-approver by the configuration it
// can see: without a provider regex and IP prefixes it accepts any SAN.
func postfinanceFindings(m Manifest) []Finding {
	replace := installFix(m.format, "Or replace it with csrguard, which approves only SANs that are the requesting Node's own addresses")
	if m.obj == nil {
		return []Finding{{ID: IDApproverNoSANBinding, Severity: severity.Warning, File: m.File, Line: m.Line,
			Message: "kubelet-csr-approver (postfinance) is installed from a URL, so its configuration cannot be seen here. Unless it is given --provider-regex and --provider-ip-prefixes, " +
				"its IP check accepts 0.0.0.0/0 and it never checks SANs against the requesting Node's addresses",
			Fix: []string{"Set PROVIDER_REGEX to your node names and PROVIDER_IP_PREFIXES to your node subnets, and check the rendered manifest: csrguard check-config kubelet-csr-approver.yaml", replace}}}
	}
	var regex, prefixes token
	var line int
	for _, ct := range m.obj.containers {
		if v, l, ok := ct.flag("provider-regex", true); ok {
			regex = token{v, l}
		}
		if v, l, ok := ct.flag("provider-ip-prefixes", true); ok {
			prefixes = token{v, l}
		}
		if t, ok := ct.env["PROVIDER_REGEX"]; ok {
			regex = t
		}
		if t, ok := ct.env["PROVIDER_IP_PREFIXES"]; ok {
			prefixes = t
		}
		if line == 0 {
			line = ct.argsLine
		}
	}
	var missing []string
	if regex.value == "" || regex.value == ".*" || regex.value == "^.*$" {
		missing = append(missing, "no provider regex (PROVIDER_REGEX or --provider-regex) limits DNS SANs")
	}
	if wide := anyPrefix(prefixes.value); prefixes.value == "" || wide != "" {
		msg := "no provider IP prefixes (PROVIDER_IP_PREFIXES or --provider-ip-prefixes): IP SANs are accepted from 0.0.0.0/0"
		if wide != "" {
			msg = fmt.Sprintf("its provider IP prefixes include %s: IP SANs are accepted from anywhere", wide)
			line = prefixes.line
		}
		missing = append(missing, msg)
	}
	if len(missing) > 0 {
		return []Finding{{ID: IDApproverNoSANBinding, Severity: severity.Warning, File: m.File, Line: max(line, m.Line, 1),
			Message: "kubelet-csr-approver (postfinance) does not bind SANs to nodes: " + strings.Join(missing, "; ") + "; and it never checks SANs against the requesting Node's addresses",
			Fix:     []string{"Set PROVIDER_REGEX to a regex matching only your node names and PROVIDER_IP_PREFIXES to your node subnets.", replace}}}
	}
	return []Finding{{ID: IDApproverLimitedSANBinding, Severity: severity.Info, File: m.File, Line: max(regex.line, m.Line, 1),
		Message: fmt.Sprintf("kubelet-csr-approver (postfinance) limits DNS SANs to %q and IP SANs to %s, but not to the requesting node: a node in range may get a certificate for another node's name or address", regex.value, prefixes.value),
		Fix:     []string{"csrguard checks every SAN against the requesting Node's own addresses; see " + buildinfo.InstallURL}}}
}

// anyPrefix returns a prefix in a comma-separated list that matches every
// address (0.0.0.0/0, ::/0), or "".
func anyPrefix(list string) string {
	for s := range strings.SplitSeq(list, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Bits() == 0 {
			return p.String()
		}
	}
	return ""
}

// metricsServerFindings check metrics-server's kubelet TLS mode against the
// kubelets' certificates: CA-signed with rotation on, self-signed without.
func metricsServerFindings(m Manifest, state RotationState, kubeletFormat string) []Finding {
	f := Finding{File: m.File, Line: m.Line}
	if m.obj == nil {
		f.ID, f.Severity = IDMetricsServerArgsUnknown, severity.Info
		f.Message = "metrics-server is installed from " + m.URL + ", whose arguments cannot be seen here. The upstream components.yaml verifies kubelet certificates with the cluster CA"
		switch state {
		case RotationOn:
			f.Message += ", which works once the approver has issued them"
		case RotationOff:
			f.Message += ", but rotation is off here, so the kubelets serve self-signed certificates and metrics-server cannot verify them unless its args carry --kubelet-insecure-tls"
		default:
			f.Message += "; no kubelet configuration is among the files to tell whether that can work"
		}
		f.Fix = []string{"Check its args with the kubelet configuration: curl -sL " + shellQuote(m.URL) + " | csrguard check-config " + fileArg(m.File) + " -"}
		return []Finding{f}
	}
	var insecure, ca bool
	insecureLine, argsLine := 0, 0
	for _, ct := range m.obj.containers {
		if v, l, ok := ct.flag("kubelet-insecure-tls", false); ok {
			if on, err := strconv.ParseBool(v); v == "" || err == nil && on {
				insecure, insecureLine = true, l
			}
		}
		if v, _, ok := ct.flag("kubelet-certificate-authority", true); ok && v != "" {
			ca = true
		}
		if argsLine == 0 && componentOf(ct.image) == ComponentMetricsServer {
			argsLine = ct.argsLine
		}
	}
	switch {
	case state == RotationUnknown:
		f.ID, f.Severity = IDRotationStateUnknown, severity.Info
		f.Message = "metrics-server is configured here, but no kubelet configuration is among the files: whether it should verify kubelet certificates (rotation on) or not (--kubelet-insecure-tls) cannot be told"
		f.Fix = []string{"Check it together with the kubelet configuration: csrguard check-config machine-config.yaml " + fileArg(m.File)}
	case state == RotationOn && insecure:
		f.ID, f.Severity, f.Line = IDMetricsServerInsecureTLS, severity.Warning, max(insecureLine, 1)
		f.Message = "metrics-server runs with --kubelet-insecure-tls and does not verify the kubelets' certificates, although rotation is on and gives every kubelet a certificate signed by the cluster CA"
		f.Fix = []string{
			"Once every kubelet has its approved certificate (csrguard certs shows them ok), remove --kubelet-insecure-tls: metrics-server then verifies kubelets with the cluster CA.",
			"Not before: without the flag, metrics-server and kubectl top fail on every kubelet still without a certificate.",
		}
	case state == RotationOff && !insecure && !ca:
		f.ID, f.Severity, f.Line = IDMetricsServerCannotVerify, severity.Error, max(argsLine, m.Line, 1)
		f.Message = "metrics-server verifies kubelet certificates, but rotation is off in the kubelet configuration here: kubelets serve self-signed certificates, " +
			"so every scrape fails (\"x509: certificate signed by unknown authority\", \"doesn't contain any IP SANs\") and kubectl top stops working"
		f.Fix = []string{
			installFix(kubeletFormat, "Either turn rotation on (rotate-server-certificates: true, or serverTLSBootstrap: true), so that kubelets get certificates signed by the cluster CA, and install csrguard to approve them"),
			"Or add --kubelet-insecure-tls to metrics-server's args: it then does not verify kubelets at all.",
		}
	default:
		return nil
	}
	return []Finding{f}
}

// safeShellWord matches words a POSIX shell takes literally.
var safeShellWord = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_~-]+$`)

// shellQuote quotes s for a command a fix suggests: a URL or file name comes
// from the files checked, and must not run as shell code when pasted.
func shellQuote(s string) string {
	if safeShellWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// fileArg is a file name as an argument of a suggested command; a name like
// "<stdin>" names no file, so a placeholder stands for it.
func fileArg(name string) string {
	if name == "" || strings.HasPrefix(name, "<") {
		return "FILE"
	}
	return shellQuote(name)
}
