package configcheck

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/csrguard/csrguard/internal/severity"
)

// maxWork bounds the nodes one file's scan visits. Aliases let a small
// document repeat a large list any number of times; a real configuration
// needs a tiny fraction of this.
const maxWork = 4_000_000

// scan collects what the files configure.
type scan struct {
	docs      []Document
	settings  []Setting
	manifests []Manifest
	findings  []Finding
	// kubelet is true once a file configures kubelets (a Talos
	// machine.kubelet or KubeletConfig, a KubeletConfiguration), so that
	// rotation not being on means it is off.
	kubelet bool
	// kubeletFormat is the Format* of the first document configuring
	// kubelets, for fixes that change it.
	kubeletFormat string
	// workerManifests are manifests in worker configs, which Talos does not
	// apply; they are not among manifests.
	workerManifests []Manifest
	// configs are the whole Talos machine configs read, one per file, with
	// the style that decides which patch they take.
	configs []talosConfig
}

// talosConfig is a whole Talos machine config (its v1alpha1 document sets
// machine.type) and its style: FormatTalosV1Alpha1 when the kubelet is
// configured under machine.kubelet (legacy), FormatTalosDocument when by a
// KubeletConfig document (multi-document).
type talosConfig struct {
	file  string
	line  int // the machine.kubelet key or the KubeletConfig's kind key
	style string
}

// configuresKubelet records that a document of format configures kubelets.
func (s *scan) configuresKubelet(format string) {
	if !s.kubelet {
		s.kubelet, s.kubeletFormat = true, format
	}
}

// rotationState sums up the settings.
func (s *scan) rotationState() RotationState {
	for _, st := range s.settings {
		if st.On {
			return RotationOn
		}
	}
	if s.kubelet || len(s.settings) > 0 {
		return RotationOff
	}
	return RotationUnknown
}

// file scans one file into s.
func (s *scan) file(name string, data []byte) error {
	docs, err := parseDocuments(name, data)
	if err != nil {
		return err
	}
	work := maxWork
	c := &fileScan{scan: s, file: name, work: &work, lineOf: func(l int) int { return l }}
	start := len(s.manifests)
	for _, d := range docs {
		c.document(d, 0)
	}
	if t := scalar(c.machineType.value); t == "worker" || t == "join" { // join: the old name
		c.workerConfig(start)
	}
	if c.machineType.valid() {
		c.configStyle()
	}
	if c.kubeletDoc != nil && c.legacyKubelet != nil {
		// Talos refuses a config that configures the kubelet both ways.
		c.add(IDInvalidField, severity.Error, c.kubeletDoc, fmt.Sprintf("a KubeletConfig document beside machine.kubelet (line %d): Talos rejects the config with \"kubelet config is already set in v1alpha1 config (.machine.kubelet)\"", c.line(c.legacyKubelet)),
			"Move the kubelet settings into the KubeletConfig document and delete machine.kubelet from the v1alpha1 document (a patch deletes it with $patch: delete).")
	}
	if work <= 0 {
		return &ParseError{File: name, Message: "document contains excessive aliasing"}
	}
	return nil
}

// workerConfig takes the manifests that a worker's config carries, from
// manifests[start:], out of what the files install: Talos applies
// extraManifests, inlineManifests and manifest documents on control-plane
// nodes only, so in a worker's config they install nothing.
func (c *fileScan) workerConfig(start int) {
	kept := c.manifests[:start]
	for _, m := range c.manifests[start:] {
		if m.format != FormatTalosV1Alpha1 && m.format != FormatTalosDocument {
			kept = append(kept, m)
			continue
		}
		c.workerManifests = append(c.workerManifests, m)
		if m.Component == "" && m.Source != "url" {
			continue // a workload of no interest here: nothing to say
		}
		c.findings = append(c.findings, Finding{ID: IDManifestNotApplied, Severity: severity.Info, File: m.File, Line: m.Line,
			Message: fmt.Sprintf("%s is in a worker's machine config (machine.type: %s, line %d): Talos applies manifests from control-plane configs only, so it installs nothing from here",
				m.what(), scalar(c.machineType.value), c.line(c.machineType.key)),
			Fix: []string{"Put it in the control-plane machine config (a patch applied to every node puts it there too), and check both together: csrguard check-config controlplane.yaml worker.yaml"}})
	}
	clear(c.manifests[len(kept):])
	c.manifests = kept
}

// configStyle records the style of the whole machine config the file holds,
// when the kubelet's place tells it. A config that configures the kubelet
// both ways is invalid (reported by file), and one that does neither tells
// nothing.
func (c *fileScan) configStyle() {
	switch {
	case c.legacyKubelet != nil && c.kubeletDoc == nil:
		c.configs = append(c.configs, talosConfig{file: c.file, line: c.line(c.legacyKubelet), style: FormatTalosV1Alpha1})
	case c.kubeletDoc != nil && c.legacyKubelet == nil:
		c.configs = append(c.configs, talosConfig{file: c.file, line: c.line(c.kubeletDoc), style: FormatTalosDocument})
	}
}

// fileScan reads the documents of one file, or of one inline manifest in it.
type fileScan struct {
	*scan
	file string
	work *int
	// lineOf maps a line of the text parsed to a line of the file: inline
	// manifests are parsed from a string inside the file.
	lineOf func(int) int
	// inline names the inline manifest being read; "" at file level.
	// inlineFormat is the Format* of the Talos document that holds it.
	inline, inlineFormat string
	// legacyKubelet and kubeletDoc are the v1alpha1 machine.kubelet key and
	// the KubeletConfig document's kind key, when the file has them.
	legacyKubelet, kubeletDoc *yaml.Node
	// machineType is the v1alpha1 machine.type, when the file sets it: a
	// whole machine config, not a patch.
	machineType field
}

// Document nesting: Talos documents only at file level; Kubernetes objects
// also in inline manifests and Lists.
const maxDepth = 3

// line returns the 1-based file line of n.
func (c *fileScan) line(n *yaml.Node) int {
	l := 1
	if n != nil && n.Line > 0 {
		l = n.Line
	}
	if l = c.lineOf(l); l < 1 {
		return 1
	}
	return l
}

// spend charges n units of work and reports whether budget is left.
func (c *fileScan) spend(n int) bool {
	*c.work -= n
	return *c.work > 0
}

func (c *fileScan) add(id string, sev severity.Level, n *yaml.Node, msg string, fix ...string) {
	c.findings = append(c.findings, Finding{ID: id, Severity: sev, File: c.file, Line: c.line(n), Message: msg, Fix: fix})
}

// invalid reports a field Talos, kubeadm, kubectl or the kubelet would reject.
func (c *fileScan) invalid(n *yaml.Node, fix, format string, args ...any) {
	c.add(IDInvalidField, severity.Error, n, fmt.Sprintf(format, args...)+"; it is rejected when applied", fix)
}

// rotateFix is how to write the rotation flag.
const rotateFix = `Write rotate-server-certificates: "true" (or "false").`

// fields returns the fields of mapping n by key, reporting duplicate keys,
// which Talos, kubeadm and kubectl reject.
func (c *fileScan) fields(n *yaml.Node, path string) map[string]field {
	out := map[string]field{}
	if !c.spend(1) {
		return out
	}
	// Duplicates count among the mapping's own keys; a "<<" merge may
	// repeat a key on purpose, and the mapping's own value wins.
	ownKeys := map[*yaml.Node]bool{}
	if own := deref(n); own != nil && own.Kind == yaml.MappingNode {
		for i := 0; i < len(own.Content); i += 2 {
			ownKeys[own.Content[i]] = true
		}
	}
	for _, f := range pairs(n, c.work) {
		if f.key.Kind != yaml.ScalarNode {
			continue
		}
		prev, dup := out[f.key.Value]
		switch {
		case !dup:
			out[f.key.Value] = f
		case ownKeys[f.key] && ownKeys[prev.key]:
			c.invalid(f.key, "Keep one of the keys.", "%s: duplicate key %q (first at line %d)", where(path), f.key.Value, c.line(prev.key))
		}
	}
	return out
}

// where names a path for a message, or the document at the top level.
func where(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

// mapping returns the fields of f's value when it is a mapping; it reports
// any other type but null, and returns ok false for anything but a mapping.
func (c *fileScan) mapping(f field, path string) (map[string]field, bool) {
	if !f.valid() || isNull(f.value) {
		return nil, false
	}
	v := deref(f.value)
	if v.Kind != yaml.MappingNode {
		c.invalid(f.key, fmt.Sprintf("Write %s as a mapping: key: value lines indented under it.", path), "%s must be a mapping, got %s", path, describe(v))
		return nil, false
	}
	return c.fields(v, path), true
}

// sequence returns the items of f's value when it is a list; it reports any
// other type but null.
func (c *fileScan) sequence(f field, path, of string) []*yaml.Node {
	if !f.valid() || isNull(f.value) {
		return nil
	}
	v := deref(f.value)
	if v.Kind != yaml.SequenceNode {
		c.invalid(f.key, fmt.Sprintf("Write %s as a list: one \"- item\" line per entry.", path), "%s must be a list of %s, got %s", path, of, describe(v))
		return nil
	}
	if !c.spend(len(v.Content)) {
		return nil
	}
	return v.Content
}

// keyOr returns a field of a value without a key of its own (a list item),
// so that it is reported at the value's line.
func keyOr(n *yaml.Node) field { return field{key: n, value: n} }

// document reads one YAML document or object.
func (c *fileScan) document(n *yaml.Node, depth int) {
	if n != nil && n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	root := deref(n)
	if isNull(root) || depth > maxDepth || !c.spend(1) {
		return // an empty document
	}
	top := c.inline == "" && depth == 0
	switch root.Kind {
	case yaml.SequenceNode:
		if top && isJSONPatch(root) {
			c.jsonPatch(root)
			return
		}
	case yaml.MappingNode:
		f := c.fields(root, "")
		apiVersion, kind := scalar(f["apiVersion"].value), scalar(f["kind"].value)
		_, hasVersion := f["version"]
		_, hasMachine := f["machine"]
		_, hasCluster := f["cluster"]
		switch {
		case top && kind == "" && (scalar(f["version"].value) == "v1alpha1" || !hasVersion && (hasMachine || hasCluster)):
			c.talosV1Alpha1(root, f)
			return
		case top && apiVersion == "v1alpha1" && kind != "":
			c.talosDocument(root, f, kind)
			return
		case strings.HasPrefix(apiVersion, "kubelet.config.k8s.io/") && kind == "KubeletConfiguration":
			c.kubeletConfiguration(root, f)
			return
		case strings.HasPrefix(apiVersion, "kubeadm.k8s.io/") && kind != "":
			c.kubeadm(root, f, kind)
			return
		case apiVersion != "" && kind != "":
			c.object(root, f, kind, depth)
			return
		}
	}
	c.doc(root, FormatUnknown, "", "")
	c.add(IDUnknownDocument, severity.Info, root, "document ignored: it is not a Talos machine config, a kubeadm or kubelet configuration, or a Kubernetes object")
}

func (c *fileScan) doc(n *yaml.Node, format, kind, name string) {
	if c.inline != "" && format != FormatUnknown {
		name = strings.TrimSpace(name + " (inline manifest " + strconv.Quote(c.inline) + ")")
	}
	c.docs = append(c.docs, Document{File: c.file, Line: c.line(n), Format: format, Kind: kind, Name: name})
}

// setting records a place that sets rotation.
func (c *fileScan) setting(n *yaml.Node, path, value string, on bool, format string) {
	c.settings = append(c.settings, Setting{File: c.file, Line: c.line(n), Path: path, Value: value, On: on, format: format})
}

// --- Talos v1alpha1: the legacy config style, and the v1alpha1 document of
// a multi-document config ---

func (c *fileScan) talosV1Alpha1(root *yaml.Node, f map[string]field) {
	c.doc(root, FormatTalosV1Alpha1, "", "")
	c.machine(f["machine"], "machine", FormatTalosV1Alpha1)
	c.cluster(f["cluster"], "cluster")
}

func (c *fileScan) machine(f field, path, format string) {
	m, ok := c.mapping(f, path)
	if !ok {
		return
	}
	if k := m["kubelet"]; format == FormatTalosV1Alpha1 && k.valid() && !isNull(k.value) && c.legacyKubelet == nil {
		c.legacyKubelet = k.key
	}
	if t := m["type"]; format == FormatTalosV1Alpha1 && t.valid() && !c.machineType.valid() {
		c.machineType = t
	}
	c.machineKubelet(m["kubelet"], path+".kubelet", format)
}

func (c *fileScan) machineKubelet(f field, path, format string) {
	k, ok := c.mapping(f, path)
	if !ok {
		return
	}
	c.configuresKubelet(format)
	c.talosArgs(k["extraArgs"], path+".extraArgs", format)
	c.talosKubeletConfig(k["extraConfig"], path+".extraConfig", format)
}

// talosArgs reads Talos extraArgs: flag names to a string or a list of strings.
func (c *fileScan) talosArgs(f field, path, format string) {
	args, ok := c.mapping(f, path)
	if !ok {
		return
	}
	if a, ok := args["rotate-server-certificates"]; ok {
		c.rotateFlag(a, path+".rotate-server-certificates", format)
	}
}

// rotateFlag reads the value of the kubelet flag --rotate-server-certificates
// given as a Talos or kubeadm extra argument: a string (a YAML boolean is
// taken as its text) or, in Talos, a list whose last value wins.
func (c *fileScan) rotateFlag(f field, path, format string) {
	v := deref(f.value)
	if isNull(v) {
		c.invalid(f.key, rotateFix, "%s has no value: the kubelet gets --rotate-server-certificates= and refuses to start", path)
		return
	}
	value := ""
	switch v.Kind {
	case yaml.ScalarNode:
		value = v.Value
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return
		}
		last := deref(v.Content[len(v.Content)-1])
		if last == nil || last.Kind != yaml.ScalarNode {
			c.invalid(f.key, rotateFix, "%s must be a string or a list of strings, got a list holding %s", path, describe(last))
			return
		}
		value = last.Value
	default:
		c.invalid(f.key, rotateFix, "%s must be a string or a list of strings, got %s", path, describe(v))
		return
	}
	on, err := strconv.ParseBool(strings.TrimSpace(value))
	if err != nil {
		c.invalid(f.key, rotateFix, "%s: %q is not a boolean (true or false): the kubelet refuses to start with --rotate-server-certificates=%s", path, clip(value), clip(value))
		return
	}
	c.setting(f.key, path, value, on, format)
}

// talosKubeletConfig reads a KubeletConfiguration fragment in Talos config
// (extraConfig, KubeletConfig.config).
func (c *fileScan) talosKubeletConfig(f field, path, format string) {
	m, ok := c.mapping(f, path)
	if !ok {
		return
	}
	if b, ok := m["serverTLSBootstrap"]; ok {
		c.configBool(b, path+".serverTLSBootstrap", format, false)
	}
}

// yaml11Bools are the plain scalars YAML 1.1 (which the kubelet's own
// configuration loader follows) reads as booleans, and YAML 1.2 (Talos) as
// strings.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

// configBool reads serverTLSBootstrap, a boolean field of KubeletConfiguration.
func (c *fileScan) configBool(f field, path, format string, yaml11 bool) {
	v := deref(f.value)
	if isNull(v) {
		return // unset: the default, off
	}
	if v.Kind == yaml.ScalarNode {
		if v.ShortTag() == "!!bool" {
			c.setting(f.key, path, v.Value, strings.EqualFold(v.Value, "true"), format)
			return
		}
		if on, ok := yaml11Bools[v.Value]; ok && yaml11 && v.Style == 0 {
			c.setting(f.key, path, v.Value, on, format)
			return
		}
	}
	c.invalid(f.key, "Write serverTLSBootstrap: true (or false), unquoted.", "%s must be a boolean (true or false, unquoted), got %s", path, describe(v))
}

func (c *fileScan) cluster(f field, path string) {
	m, ok := c.mapping(f, path)
	if !ok {
		return
	}
	c.extraManifests(m["extraManifests"], path+".extraManifests")
	c.inlineManifests(m["inlineManifests"], path+".inlineManifests")
}

func (c *fileScan) extraManifests(f field, path string) {
	for i, item := range c.sequence(f, path, "URLs") {
		c.manifestURL(keyOr(item), fmt.Sprintf("%s[%d]", path, i), "", FormatTalosV1Alpha1)
	}
}

// manifestURL records a manifest URL Talos fetches and applies.
func (c *fileScan) manifestURL(f field, path, name, format string) {
	v := deref(f.value)
	if v == nil || !isString(v) {
		c.invalid(f.key, "Give the https:// URL of the manifest.", "%s must be a URL, got %s", path, describe(v))
		return
	}
	raw := strings.TrimSpace(v.Value)
	info := classifyURL(raw)
	if info.invalid != "" {
		c.invalid(f.key, "Give the https:// URL of the manifest.", "%s: %q %s: Talos cannot fetch it", path, clip(raw), info.invalid)
		return
	}
	c.manifests = append(c.manifests, Manifest{
		File: c.file, Line: c.line(f.key), Source: "url", URL: raw, Name: name,
		Component: info.component, Pin: info.pin, Ref: info.ref, format: format, url: info,
	})
}

func (c *fileScan) inlineManifests(f field, path string) {
	for i, item := range c.sequence(f, path, "inline manifests (name, contents)") {
		p := fmt.Sprintf("%s[%d]", path, i)
		m, ok := c.mapping(keyOr(item), p)
		if !ok {
			continue
		}
		c.inlineManifest(m["contents"], p+".contents", scalar(m["name"].value), FormatTalosV1Alpha1)
	}
}

// inlineManifest reads the manifests in a Talos inline manifest's text.
func (c *fileScan) inlineManifest(f field, path, name, format string) {
	if !f.valid() || isNull(f.value) || c.inline != "" {
		return
	}
	v := deref(f.value)
	if !isString(v) {
		c.invalid(f.key, "Give the manifests as a string: the key, then \"|\" and the YAML indented below it.", "%s must be a string holding YAML manifests, got %s", path, describe(v))
		return
	}
	if !c.spend(len(v.Value) / 64) {
		return
	}
	// A literal block (|) keeps its lines: line k of the text is line k
	// after the key's. Other styles fold or escape lines; point at the key.
	base := v.Line
	lineOf := func(int) int { return c.lineOf(base) }
	if v.Style&yaml.LiteralStyle != 0 {
		lineOf = func(l int) int { return c.lineOf(base + l) }
	}
	if name == "" {
		name = path
	}
	docs, err := parseDocuments(c.file, []byte(v.Value))
	if err != nil {
		pe, _ := errors.AsType[*ParseError](err)
		line, msg := base, err.Error()
		if pe != nil {
			msg = pe.Message
			if pe.Line > 0 {
				line = pe.Line
				if v.Style&yaml.LiteralStyle == 0 {
					line = 0
				}
				line += base
			}
		}
		c.findings = append(c.findings, Finding{ID: IDInvalidField, Severity: severity.Error, File: c.file, Line: max(c.lineOf(line), 1),
			Message: fmt.Sprintf("inline manifest %q (%s) is %s; Talos fails to apply it", name, path, msg),
			Fix:     []string{"Correct the manifest's YAML."}})
		return
	}
	inner := &fileScan{scan: c.scan, file: c.file, work: c.work, lineOf: lineOf, inline: name, inlineFormat: format}
	for _, d := range docs {
		inner.document(d, 1)
	}
}

// --- Talos typed documents: the multi-document config style (Talos 1.14) ---

func (c *fileScan) talosDocument(root *yaml.Node, f map[string]field, kind string) {
	name := scalar(f["name"].value)
	c.doc(root, FormatTalosDocument, kind, name)
	switch kind {
	case "KubeletConfig":
		if c.kubeletDoc == nil {
			c.kubeletDoc = f["kind"].key
		}
		c.configuresKubelet(FormatTalosDocument)
		c.talosArgs(f["extraArgs"], "KubeletConfig.extraArgs", FormatTalosDocument)
		c.talosKubeletConfig(f["config"], "KubeletConfig.config", FormatTalosDocument)
	case "KubeExternalManifestConfig":
		u, ok := f["url"]
		if !ok {
			c.invalid(f["kind"].key, "Add url: with the https:// URL of the manifest.", "KubeExternalManifestConfig %q has no url", name)
			return
		}
		c.manifestURL(u, "KubeExternalManifestConfig.url", name, FormatTalosDocument)
	case "KubeInlineManifestConfig":
		c.inlineManifest(f["manifest"], "KubeInlineManifestConfig.manifest", name, FormatTalosDocument)
	}
}

// --- kubelet and kubeadm ---

func (c *fileScan) kubeletConfiguration(root *yaml.Node, f map[string]field) {
	c.doc(root, FormatKubelet, "KubeletConfiguration", "")
	c.configuresKubelet(FormatKubelet)
	if b, ok := f["serverTLSBootstrap"]; ok {
		c.configBool(b, "KubeletConfiguration.serverTLSBootstrap", FormatKubelet, true)
	}
}

func (c *fileScan) kubeadm(root *yaml.Node, f map[string]field, kind string) {
	c.doc(root, FormatKubeadm, kind, "")
	if kind != "InitConfiguration" && kind != "JoinConfiguration" {
		return
	}
	nr, ok := c.mapping(f["nodeRegistration"], kind+".nodeRegistration")
	if !ok {
		return
	}
	path := kind + ".nodeRegistration.kubeletExtraArgs"
	args, ok := nr["kubeletExtraArgs"]
	if !ok || isNull(args.value) {
		return
	}
	switch v := deref(args.value); v.Kind {
	case yaml.MappingNode: // v1beta3: flag name to value
		if a, ok := c.fields(v, path)["rotate-server-certificates"]; ok {
			c.rotateFlag(a, path+".rotate-server-certificates", FormatKubeadm)
		}
	case yaml.SequenceNode: // v1beta4: a list of {name, value}
		for i, item := range c.sequence(args, path, "{name, value} arguments") {
			m, ok := c.mapping(keyOr(item), fmt.Sprintf("%s[%d]", path, i))
			if ok && scalar(m["name"].value) == "rotate-server-certificates" {
				value := m["value"]
				if !value.valid() {
					value = field{key: m["name"].key}
				}
				c.rotateFlag(value, path+"[rotate-server-certificates]", FormatKubeadm)
			}
		}
	default:
		c.invalid(args.key, "Write kubeletExtraArgs as your kubeadm API version wants it: a mapping in v1beta3, a list of {name, value} in v1beta4.", "%s must be a mapping (kubeadm v1beta3) or a list of {name, value} (v1beta4), got %s", path, describe(v))
	}
}
