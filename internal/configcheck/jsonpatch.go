package configcheck

import (
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// isJSONPatch reports whether a list is an RFC 6902 patch: every item has op
// and path.
func isJSONPatch(n *yaml.Node) bool {
	if len(n.Content) == 0 {
		return false
	}
	for _, item := range n.Content {
		item = deref(item)
		if item == nil || item.Kind != yaml.MappingNode {
			return false
		}
		var op, path bool
		for i := 0; i+1 < len(item.Content); i += 2 {
			switch item.Content[i].Value {
			case "op":
				op = true
			case "path":
				path = true
			}
		}
		if !op || !path {
			return false
		}
	}
	return true
}

// jsonPatch reads a Talos JSON patch: add and replace operations on the
// paths that matter here.
func (c *fileScan) jsonPatch(root *yaml.Node) {
	c.doc(root, FormatTalosJSONPatch, "", "")
	for _, item := range root.Content {
		f := c.fields(item, "")
		op := scalar(f["op"].value)
		if op != "add" && op != "replace" {
			continue
		}
		v, ok := f["value"]
		if !ok {
			continue
		}
		var segs []string
		for _, s := range strings.Split(strings.TrimPrefix(scalar(f["path"].value), "/"), "/") {
			segs = append(segs, strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~"))
		}
		c.patchValue(segs, v)
	}
}

// patchValue reads the value a JSON patch puts at path segs as the legacy
// config's reader would read it there.
func (c *fileScan) patchValue(segs []string, v field) {
	const format = FormatTalosJSONPatch
	p := strings.Join(segs, "/")
	switch p {
	case "":
		if m, ok := c.mapping(v, "value"); ok {
			c.machine(m["machine"], "machine", format)
			c.cluster(m["cluster"], "cluster")
		}
	case "machine":
		c.machine(v, "machine", format)
	case "machine/kubelet":
		c.machineKubelet(v, "machine.kubelet", format)
	case "machine/kubelet/extraArgs":
		c.configuresKubelet(format)
		c.talosArgs(v, "machine.kubelet.extraArgs", format)
	case "machine/kubelet/extraArgs/rotate-server-certificates":
		c.rotateFlag(v, "machine.kubelet.extraArgs.rotate-server-certificates", format)
	case "machine/kubelet/extraConfig":
		c.configuresKubelet(format)
		c.talosKubeletConfig(v, "machine.kubelet.extraConfig", format)
	case "machine/kubelet/extraConfig/serverTLSBootstrap":
		c.configBool(v, "machine.kubelet.extraConfig.serverTLSBootstrap", format, false)
	case "cluster":
		c.cluster(v, "cluster")
	case "cluster/extraManifests":
		c.extraManifests(v, "cluster.extraManifests")
	case "cluster/inlineManifests":
		c.inlineManifests(v, "cluster.inlineManifests")
	default:
		if len(segs) == 3 && segs[0] == "cluster" && segs[1] == "extraManifests" {
			c.manifestURL(v, "cluster.extraManifests item", "", format)
		}
		if len(segs) == 3 && segs[0] == "cluster" && segs[1] == "inlineManifests" {
			if m, ok := c.mapping(v, "cluster.inlineManifests item"); ok {
				c.inlineManifest(m["contents"], "cluster.inlineManifests item.contents", scalar(m["name"].value), FormatTalosV1Alpha1)
			}
		}
	}
}
