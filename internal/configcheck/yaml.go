package configcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// parseDocuments splits data into its YAML documents, as nodes that keep
// their line numbers.
func parseDocuments(name string, data []byte) ([]*yaml.Node, error) {
	if len(data) > MaxFileSize {
		return nil, &ParseError{File: name, Message: fmt.Sprintf("%d bytes is more than the %d MiB limit of a configuration file", len(data), MaxFileSize>>20)}
	}
	docs, err := decode(data)
	if err != nil {
		return nil, parseError(name, data, err)
	}
	return docs, nil
}

// decode parses every document of data.
func decode(data []byte) (docs []*yaml.Node, err error) {
	// The parser reports malformed input by panicking internally and
	// recovering; should any input escape that, it is still malformed
	// input, not a crash.
	defer func() {
		if r := recover(); r != nil {
			docs, err = nil, fmt.Errorf("yaml: the parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		n := &yaml.Node{}
		err := dec.Decode(n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, n)
	}
}

var yamlErrorPattern = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// parserProblems are the messages of the YAML parser (as opposed to its
// scanner). The parser counts lines from 0 and omits line 0, while the
// scanner counts from 1; parseError corrects for that.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected node content":     true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

var unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// parseError turns the YAML parser's error into a ParseError with the
// 1-based line of the problem.
func parseError(name string, data []byte, err error) *ParseError {
	problem, line, ok := splitYAMLError(err)
	if !ok {
		return &ParseError{File: name, Message: "not valid YAML: " + err.Error()}
	}
	switch {
	case strings.HasPrefix(problem, "control characters"):
		line = lineOfByte(data, bytes.IndexFunc(data, isControl))
	case strings.HasPrefix(problem, "invalid ") && strings.Contains(problem, "UTF-8"), problem == "invalid Unicode character":
		line = lineOfByte(data, firstInvalidUTF8(data))
	case unknownAnchor.MatchString(problem):
		line = lineOfByte(data, bytes.Index(data, []byte("*"+unknownAnchor.FindStringSubmatch(problem)[1])))
	case line > 0:
		// The parser names the start of the construct it was reading (a
		// mapping that began lines before); the line that breaks it is the
		// first whose inclusion makes the same error appear.
		line = firstFailingLine(data, problem, line)
	}
	// An error at the end of the input names the line after the last.
	if last := lineOfByte(data, len(bytes.TrimRight(data, "\n"))); line > last {
		line = last
	}
	return &ParseError{File: name, Line: line, Message: "not valid YAML: " + problem}
}

// splitYAMLError returns the problem and 1-based line of a YAML parser error;
// line is 0 when the error names none.
func splitYAMLError(err error) (problem string, line int, ok bool) {
	m := yamlErrorPattern.FindStringSubmatch(err.Error())
	if m == nil {
		return "", 0, false
	}
	line, _ = strconv.Atoi(m[1]) // "" when the parser names no line
	problem = m[2]
	switch {
	case parserProblems[problem]:
		// Parser marks count from 0, and line 0 goes unnamed.
		line++
	case m[1] == "" && !strings.HasPrefix(problem, "input error") && !strings.HasPrefix(problem, "attempted to go past") &&
		!strings.HasPrefix(problem, "control characters") && !strings.HasPrefix(problem, "invalid ") && !unknownAnchor.MatchString(problem) &&
		!strings.HasPrefix(problem, "the parser failed"):
		// A scanner error on the first line goes unnamed too.
		line = 1
	}
	return problem, line, true
}

// firstFailingLine returns the smallest number of lines k ≥ from such that
// the first k lines of data fail to parse with problem, or from when that
// cannot be told.
func firstFailingLine(data []byte, problem string, from int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(k int) bool {
		_, err := decode(bytes.Join(lines[:k], nil))
		if err == nil {
			return false
		}
		p, _, ok := splitYAMLError(err)
		return ok && p == problem
	}
	lo, hi := from, len(lines)
	if lo >= hi || !fails(hi) {
		return from
	}
	if fails(lo) {
		return lo
	}
	// Invariant: the first lo lines parse (or fail otherwise), the first hi fail.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// lineOfByte returns the 1-based line of offset i in data, or 0 for i < 0.
func lineOfByte(data []byte, i int) int {
	if i < 0 || i > len(data) {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// maxAliasHops bounds alias chains; the parser builds none longer than the
// document, but a bound keeps every walk obviously finite.
const maxAliasHops = 64

// deref follows aliases to the node they name; nil for a broken chain.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliasHops {
			return nil
		}
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or null ("key:" with no value).
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// isString reports whether n is a string scalar.
func isString(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

// describe names n's type for messages: "a mapping", "a list", "a string"…
func describe(n *yaml.Node) string {
	n = deref(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %q", clip(n.Value))
	case "!!bool":
		return "the boolean " + n.Value
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), clip(n.Value))
}

// clip shortens s for a message.
func clip(s string) string {
	const limit = 60
	if len(s) <= limit {
		return s
	}
	// Cut on a rune boundary.
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// scalar returns the value of a scalar node, or "" for anything else.
func scalar(n *yaml.Node) string {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return ""
	}
	return n.Value
}

// field is one key of a mapping and its value.
type field struct {
	key, value *yaml.Node
}

// valid reports whether the key is present.
func (f field) valid() bool { return f.key != nil }

// maxMergeDepth bounds nested "<<" merge keys.
const maxMergeDepth = 8

// pairs returns the fields of mapping n in order, merged ("<<") fields after
// the mapping's own. Every field and mapping read costs one unit of budget,
// so that aliases, which may repeat a node any number of times, cannot make
// a walk explode; it stops when the budget is spent.
func pairs(n *yaml.Node, budget *int) []field {
	return appendPairs(nil, n, 0, budget)
}

func appendPairs(out []field, n *yaml.Node, depth int, budget *int) []field {
	n = deref(n)
	*budget-- // every mapping visited costs, so aliases cannot fan out unbounded
	if n == nil || n.Kind != yaml.MappingNode || *budget <= 0 {
		return out
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content) && *budget > 0; i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		out = append(out, field{key: k, value: v})
		*budget--
	}
	if depth >= maxMergeDepth {
		return out
	}
	for _, v := range merges {
		if *budget <= 0 {
			return out
		}
		src := deref(v)
		if src != nil && src.Kind == yaml.SequenceNode {
			for _, m := range src.Content {
				if *budget <= 0 {
					return out
				}
				out = appendPairs(out, m, depth+1, budget)
			}
			continue
		}
		out = appendPairs(out, src, depth+1, budget)
	}
	return out
}
