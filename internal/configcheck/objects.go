package configcheck

import (
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/severity"
)

// workload is a Deployment, DaemonSet, StatefulSet, Job or Pod in a manifest.
type workload struct {
	kind, name string // name is namespace/name
	short      string // the name without the namespace
	containers []container
}

// container is what the checks read of one container.
type container struct {
	name      string
	line      int // the container's first key
	image     string
	imageLine int
	// tokens are the command and args, each item split at white space, so
	// that flags inside "sh -c" scripts are seen too.
	tokens   []token
	argsLine int // the args key, or the container's line
	env      map[string]token
}

// token is a word of a container's command line, or an env value.
type token struct {
	value string
	line  int
}

// flag returns the value of --name=value, --name value (valueFollows) or
// -name…; found is false when absent. A bare --name gives "".
func (ct container) flag(name string, valueFollows bool) (value string, line int, found bool) {
	for i, t := range ct.tokens {
		arg := t.value
		if !strings.HasPrefix(arg, "-") {
			continue
		}
		arg = "--" + strings.TrimLeft(arg, "-")
		if v, ok := strings.CutPrefix(arg, "--"+name+"="); ok {
			return v, t.line, true
		}
		if arg == "--"+name {
			if valueFollows && i+1 < len(ct.tokens) {
				return ct.tokens[i+1].value, t.line, true
			}
			return "", t.line, true
		}
	}
	return "", 0, false
}

// podSpecPaths says where each workload kind keeps its pod spec.
var podSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// object reads a Kubernetes object: Lists are opened, workloads read.
func (c *fileScan) object(root *yaml.Node, f map[string]field, kind string, depth int) {
	md, _ := c.mapping(f["metadata"], kind+".metadata")
	short := scalar(md["name"].value)
	name := short
	if ns := scalar(md["namespace"].value); ns != "" {
		name = ns + "/" + name
	}
	c.doc(root, FormatKubernetes, kind, name)
	if strings.HasSuffix(kind, "List") {
		// v1 List, DeploymentList…: kubectl get -o yaml writes these.
		if items := deref(f["items"].value); items != nil && items.Kind == yaml.SequenceNode && c.spend(len(items.Content)) {
			for _, item := range items.Content {
				c.document(item, depth+1)
			}
		}
		return
	}
	path, ok := podSpecPaths[kind]
	if !ok {
		return
	}
	// A workload is recorded even without a pod spec: its name may say
	// what it is.
	w := &workload{kind: kind, name: name, short: short}
	defer c.workload(w, f["kind"].key)
	where := kind + " " + name
	spec := f
	for i, key := range path {
		m, ok := c.mapping(spec[key], where+" "+strings.Join(path[:i+1], "."))
		if !ok {
			return
		}
		spec = m
	}
	cpath := where + " " + strings.Join(path, ".") + ".containers"
	for i, item := range c.sequence(spec["containers"], cpath, "containers") {
		if ct, ok := c.container(item, fmt.Sprintf("%s[%d]", cpath, i)); ok {
			w.containers = append(w.containers, ct)
		}
	}
}

func (c *fileScan) container(item *yaml.Node, path string) (container, bool) {
	m, ok := c.mapping(keyOr(item), path)
	if !ok {
		return container{}, false
	}
	ct := container{name: scalar(m["name"].value), line: c.line(item), env: map[string]token{}}
	ct.argsLine = ct.line
	if img := m["image"]; img.valid() {
		ct.image, ct.imageLine = strings.TrimSpace(scalar(img.value)), c.line(img.key)
	}
	for _, key := range []string{"command", "args"} {
		f := m[key]
		if key == "args" && f.valid() {
			ct.argsLine = c.line(f.key)
		}
		for _, it := range c.sequence(f, path+"."+key, "strings") {
			v := deref(it)
			if v == nil || v.Kind != yaml.ScalarNode {
				c.invalid(it, "Write each argument as a quoted string.", "%s.%s must be a list of strings, got a list holding %s", path, key, describe(v))
				continue
			}
			words := strings.Fields(v.Value)
			if !c.spend(len(words)) {
				return ct, true
			}
			for _, w := range words {
				ct.tokens = append(ct.tokens, token{value: w, line: c.line(it)})
			}
		}
	}
	for i, it := range c.sequence(m["env"], path+".env", "{name, value}") {
		e, ok := c.mapping(keyOr(it), fmt.Sprintf("%s.env[%d]", path, i))
		if ok && e["name"].valid() {
			ct.env[scalar(e["name"].value)] = token{value: scalar(e["value"].value), line: c.line(e["name"].key)}
		}
	}
	return ct, true
}

// workload records what a workload is and the kubelet flags its containers pass.
func (c *fileScan) workload(w *workload, kindKey *yaml.Node) {
	// Known by its name or its images, not its namespace: metrics-server
	// in a namespace named after csrguard is still metrics-server.
	component := componentOf(w.short)
	for _, ct := range w.containers {
		if v, line, ok := ct.flag("rotate-server-certificates", false); ok {
			path := fmt.Sprintf("%s %s container %q --rotate-server-certificates", w.kind, w.name, ct.name)
			value := v
			if value == "" {
				value = "true" // a bare boolean flag
			}
			on, err := strconv.ParseBool(value)
			if err != nil {
				c.findings = append(c.findings, Finding{ID: IDInvalidField, Severity: severity.Error, File: c.file, Line: max(line, 1),
					Message: fmt.Sprintf("%s: %q is not a boolean: the kubelet refuses to start", path, clip(v)),
					Fix:     []string{"Write --rotate-server-certificates=true or =false."}})
			} else {
				c.settings = append(c.settings, Setting{File: c.file, Line: max(line, 1), Path: path, Value: value, On: on, format: FormatKubernetes})
			}
		}
		if x := componentOf(ct.image); x != "" && (component == "" || rank(x) < rank(component)) {
			component = x
		}
	}
	// The fixes for a workload inline in Talos config change the Talos config.
	format := FormatKubernetes
	if c.inlineFormat != "" {
		format = c.inlineFormat
	}
	c.manifests = append(c.manifests, Manifest{
		File: c.file, Line: c.line(kindKey), Source: "object", Name: w.kind + " " + w.name,
		Component: component, format: format, obj: w,
	})
}

// rank orders components the way diagnose recognises approvers: a workload
// named or built like csrguard is csrguard, whatever else it mentions.
func rank(component string) int {
	switch component {
	case servingcsr.ApproverCSRGuard:
		return 0
	case servingcsr.ApproverAlex1989hu:
		return 1
	case servingcsr.ApproverPostfinance:
		return 2
	case servingcsr.ApproverTalosCCM:
		return 3
	case ComponentMetricsServer:
		return 4
	}
	return 5
}
