package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// printFlags are kubectl's output flags, -o/--output and --no-headers, for
// every command that prints what it found.
type printFlags struct {
	format    string
	noHeaders bool
}

const outputHelp = `Output format: "table" or "wide" (more columns, lists in full) for people; "json", "yaml", "name", "jsonpath=TEMPLATE" or "jsonpath-file=FILE" (kubectl's JSONPath over the -o json document) for scripts.`

func (p *printFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&p.format, "output", "o", "table", outputHelp)
	fs.BoolVar(&p.noHeaders, "no-headers", false, "With table or wide output, print no column headings and no summary lines above the rows.")
}

// The kinds of output.
const (
	outputTable    = "table"
	outputWide     = "wide"
	outputJSON     = "json"
	outputYAML     = "yaml"
	outputName     = "name"
	outputJSONPath = "jsonpath"
)

// outputFormat is a parsed -o value.
type outputFormat struct {
	kind string
	// jsonPath is the parsed template of jsonpath= and jsonpath-file=.
	jsonPath *printers.JSONPathPrinter
}

// forPeople reports whether the output is a table, wide or not.
func (f outputFormat) forPeople() bool { return f.kind == outputTable || f.kind == outputWide }

// parseOutput parses -o: a kind, or jsonpath=TEMPLATE, or
// jsonpath-file=FILE. Its errors are usage errors naming --output.
func parseOutput(s string) (outputFormat, error) {
	switch s {
	case "", outputTable:
		return outputFormat{kind: outputTable}, nil
	case outputWide, outputJSON, outputYAML, outputName:
		return outputFormat{kind: s}, nil
	}
	kind, arg, _ := strings.Cut(s, "=")
	var tmpl string
	switch kind {
	case "jsonpath":
		tmpl = arg
	case "jsonpath-file":
		b, err := os.ReadFile(arg)
		if err != nil {
			return outputFormat{}, flagError("output", "%s: cannot read the template: %v", s, err)
		}
		tmpl = string(b)
	default:
		return outputFormat{}, flagError("output", `must be "table", "wide", "json", "yaml", "name", "jsonpath=TEMPLATE" or "jsonpath-file=FILE", got %q`, s)
	}
	if tmpl == "" {
		return outputFormat{}, flagError("output", "%s: the template is empty", s)
	}
	p, err := printers.NewJSONPathPrinter(tmpl)
	if err != nil {
		return outputFormat{}, flagError("output", "%s: %v", s, err)
	}
	// Like kubectl's default --allow-missing-template-keys: a field that is
	// absent from one row prints nothing rather than failing the command.
	p.AllowMissingKeys(true)
	return outputFormat{kind: outputJSONPath, jsonPath: p}, nil
}

// validateOutput checks an -o value before any work is done.
func validateOutput(format string) error {
	_, err := parseOutput(format)
	return err
}

// tableOptions say how a document prints for people.
type tableOptions struct {
	// wide adds columns and prints lists in full.
	wide bool
	// noHeaders leaves out column headings and the summary lines above rows.
	noHeaders bool
}

// A document is what one command prints. Its JSON encoding is the -o json
// output, and the -o yaml and -o jsonpath outputs are of that same
// document; the methods print it for people and by name.
type document interface {
	// table writes the table (or wide) output.
	table(w io.Writer, o tableOptions) error
	// names are the lines of -o name: kind/name for Kubernetes objects
	// (node/…, certificatesigningrequest.certificates.k8s.io/…), the ID for
	// findings.
	names() []string
}

// print writes doc in the format of the flags.
func (p *printFlags) print(w io.Writer, doc document) error {
	f, err := parseOutput(p.format)
	if err != nil {
		return err
	}
	switch f.kind {
	case outputTable, outputWide:
		return doc.table(w, tableOptions{wide: f.kind == outputWide, noHeaders: p.noHeaders})
	case outputName:
		for _, n := range doc.names() {
			if _, err := fmt.Fprintln(w, n); err != nil {
				return err
			}
		}
		return nil
	case outputJSON:
		return writeJSON(w, doc)
	case outputYAML:
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	// jsonpath: over the document -o json prints, decoded with numbers kept
	// as written (a float64 would print 1e+06).
	var buf bytes.Buffer
	if err := writeJSON(&buf, doc); err != nil {
		return err
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	var data any
	if err := dec.Decode(&data); err != nil {
		return err
	}
	if err := f.jsonPath.Execute(w, data); err != nil {
		// The template asked for something the document does not hold.
		return usageError{fmt.Errorf("--output %s: %w", p.format, err)}
	}
	return nil
}

// writeJSON writes v as indented JSON, the one JSON encoding of every
// command. HTML escaping is off: fixes hold <placeholders> and must read as
// they are typed.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// newTabWriter aligns table columns, two spaces apart.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// plural returns "1 kubelet" or "2 kubelets".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
