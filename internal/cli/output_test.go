package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// printed prints doc with the output flags args ("-o", "wide", "--no-headers", …).
func printed(t *testing.T, doc document, args ...string) string {
	t.Helper()
	var p printFlags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	p.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.print(&buf, doc); err != nil {
		t.Fatalf("print %q: %v", args, err)
	}
	return buf.String()
}

// fakeDocument holds what makes JSON and JSONPath differ from naive encoding.
type fakeDocument struct {
	Fix   string `json:"fix"`
	Big   int64  `json:"big"`
	Items []int  `json:"items"`
}

func (fakeDocument) names() []string { return []string{"thing/a", "thing/b"} }
func (fakeDocument) table(w io.Writer, o tableOptions) error {
	_, err := io.WriteString(w, map[bool]string{false: "narrow", true: "wide"}[o.wide]+map[bool]string{false: "", true: " no-headers"}[o.noHeaders]+"\n")
	return err
}

func TestPrintFormats(t *testing.T) {
	doc := fakeDocument{Fix: "talosctl -n <node> logs kubelet && echo ok", Big: 31536000, Items: []int{1, 2}}
	template := filepath.Join(t.TempDir(), "template")
	if err := os.WriteFile(template, []byte(`{.items[1]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{nil, "narrow\n"},
		{[]string{"-o", "table", "--no-headers"}, "narrow no-headers\n"},
		{[]string{"-o", "wide"}, "wide\n"},
		// No HTML escaping: a fix reads as it is typed.
		{[]string{"-o", "json"}, "{\n  \"fix\": \"talosctl -n <node> logs kubelet && echo ok\",\n  \"big\": 31536000,\n  \"items\": [\n    1,\n    2\n  ]\n}\n"},
		{[]string{"-o", "yaml"}, "big: 31536000\nfix: talosctl -n <node> logs kubelet && echo ok\nitems:\n- 1\n- 2\n"},
		{[]string{"-o", "name"}, "thing/a\nthing/b\n"},
		// Numbers print as written, not as 3.1536e+07.
		{[]string{"-o", "jsonpath={.big} {.fix}"}, "31536000 talosctl -n <node> logs kubelet && echo ok"},
		{[]string{"-o", "jsonpath-file=" + template}, "2"},
		// A key no row has prints nothing, as with kubectl's default --allow-missing-template-keys.
		{[]string{"-o", "jsonpath={.missing}"}, ""},
	}
	for _, tc := range tests {
		if got := printed(t, doc, tc.args...); got != tc.want {
			t.Errorf("print %q = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestParseOutputErrors(t *testing.T) {
	for format, want := range map[string]string{
		"xml":                         `--output must be "table", "wide", "json", "yaml", "name", "jsonpath=TEMPLATE" or "jsonpath-file=FILE", got "xml"`,
		"jsonpath=":                   "--output jsonpath=: the template is empty",
		"jsonpath={.a":                "--output jsonpath={.a: unclosed action",
		"jsonpath-file=/no/such/file": "--output jsonpath-file=/no/such/file: cannot read the template",
		"custom-columns=NAME:.name":   `got "custom-columns=NAME:.name"`,
	} {
		err := validateOutput(format)
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), want) {
			t.Errorf("validateOutput(%q) = %v, want a usage error containing %q", format, err, want)
		}
	}
}

func TestPrintJSONPathExecutionIsUsageError(t *testing.T) {
	p := printFlags{format: "jsonpath={.items[5]}"}
	err := p.print(io.Discard, fakeDocument{Items: []int{1}})
	if !errors.As(err, new(usageError)) {
		t.Errorf("print with an index out of range = %v, want a usage error", err)
	}
}
