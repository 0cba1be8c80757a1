package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// outputFormats are the values of -o/--output.
const outputHelp = `Output format: "table" for humans, "json" or "yaml" for scripts.`

func validateOutput(format string) error {
	switch format {
	case "table", "json", "yaml":
		return nil
	}
	return flagError("output", `must be "table", "json" or "yaml", got %q`, format)
}

// writeData writes v as JSON or YAML.
func writeData(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // fixes hold <placeholders>; keep them readable
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q", format)
}
