package configcheck

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// The values of Manifest.Pin.
const (
	pinned   = "pinned"
	unpinned = "unpinned"
)

// urlInfo is what a manifest URL tells without fetching it.
type urlInfo struct {
	component string
	pin       string // pinned, unpinned or "" (cannot tell)
	ref       string // the tag, commit or branch named
	insecure  bool   // plain http
	// pinnedForm is the URL with its moving ref replaced by a placeholder
	// for a tag, when the URL's shape is known.
	pinnedForm string
	invalid    string // why Talos cannot fetch it; "" when it can
}

// movingRefs are ref names that follow a branch or the newest release.
var movingRefs = map[string]bool{
	"main": true, "master": true, "latest": true, "head": true, "develop": true,
	"development": true, "trunk": true, "dev": true, "nightly": true, "edge": true,
}

var (
	commitRef  = regexp.MustCompile(`^[0-9a-f]{40}$`)
	versionRef = regexp.MustCompile(`^v?\d+(\.\d+)+([-+._].*)?$|\d+\.\d+\.\d+`)
)

// refPin says whether a ref in a URL is a release tag or commit, or a branch.
func refPin(ref string) string {
	if commitRef.MatchString(strings.ToLower(ref)) || versionRef.MatchString(ref) && !movingRefs[strings.ToLower(ref)] {
		return pinned
	}
	return unpinned
}

// componentOf names the known component a URL, image or name is about.
func componentOf(s string) string {
	s = strings.ToLower(s)
	switch {
	case strings.Contains(s, "csrguard"):
		return servingcsr.ApproverCSRGuard
	case strings.Contains(s, servingcsr.ApproverAlex1989hu):
		return servingcsr.ApproverAlex1989hu
	case strings.Contains(s, servingcsr.ApproverPostfinance):
		return servingcsr.ApproverPostfinance
	case strings.Contains(s, servingcsr.ApproverTalosCCM):
		return servingcsr.ApproverTalosCCM
	case strings.Contains(s, ComponentMetricsServer):
		return ComponentMetricsServer
	}
	return ""
}

// classifyURL reads a manifest URL: what it installs and whether it is pinned.
func classifyURL(raw string) urlInfo {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return urlInfo{invalid: "is not an http(s) URL"}
	}
	info := urlInfo{insecure: u.Scheme == "http", component: componentOf(u.Host + u.Path)}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	// at sets the ref to segs[i] (or to the ref after refs/heads|tags/ there)
	// and remembers the URL's pinned form.
	at := func(i int) {
		if i >= len(segs) {
			return
		}
		n := 1
		ref := segs[i]
		if ref == "refs" && i+2 < len(segs) && (segs[i+1] == "heads" || segs[i+1] == "tags") {
			n, ref = 3, segs[i+2]
			info.pin = pinned
			if segs[i+1] == "heads" {
				info.pin = unpinned
			}
		} else {
			info.pin = refPin(ref)
		}
		info.ref = ref
		form := append(append(append([]string{}, segs[:i]...), "<tag>"), segs[i+n:]...)
		info.pinnedForm = u.Scheme + "://" + u.Host + "/" + strings.Join(form, "/")
	}
	switch strings.ToLower(u.Hostname()) {
	case "raw.githubusercontent.com":
		// /OWNER/REPO/REF/PATH
		if len(segs) >= 4 {
			at(2)
		}
	case "github.com":
		switch {
		case len(segs) >= 5 && segs[2] == "releases" && segs[3] == "latest" && segs[4] == "download":
			info.pin, info.ref = unpinned, "latest"
			form := append(append(append([]string{}, segs[:3]...), "download", "<tag>"), segs[5:]...)
			info.pinnedForm = u.Scheme + "://" + u.Host + "/" + strings.Join(form, "/")
		case len(segs) >= 5 && segs[2] == "releases" && segs[3] == "download":
			info.ref, info.pin = segs[4], pinned
			if movingRefs[strings.ToLower(segs[4])] {
				info.pin = unpinned
			}
		case len(segs) >= 5 && (segs[2] == "raw" || segs[2] == "blob"):
			at(3)
		}
	default:
		// GitLab and Gitea: /OWNER/REPO/-/raw/REF/PATH, /OWNER/REPO/raw/branch/REF/PATH.
		for i := 0; i+2 < len(segs); i++ {
			if segs[i] == "raw" && (segs[i+1] == "branch" || segs[i+1] == "tag" || segs[i+1] == "commit") {
				at(i + 2)
				if segs[i+1] == "branch" {
					info.pin = unpinned
				}
				break
			}
			if segs[i] == "-" && segs[i+1] == "raw" {
				at(i + 2)
				break
			}
		}
	}
	if info.pin == "" {
		// Any other host: a path segment naming a branch or "latest" moves.
		for _, s := range segs {
			if movingRefs[strings.ToLower(s)] {
				info.pin, info.ref = unpinned, s
				break
			}
		}
	}
	return info
}

// imageTag returns the tag of a container image reference and whether it
// moves: no tag (so "latest"), or a branch-like tag, and no digest.
func imageTag(image string) (tag string, moving bool) {
	if strings.Contains(image, "@sha256:") {
		return "", false
	}
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	i := strings.LastIndex(name, ":")
	if i < 0 {
		return "latest", true
	}
	tag = name[i+1:]
	return tag, movingRefs[strings.ToLower(tag)]
}
