package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/csrguard/csrguard/internal/configcheck"
)

// checkConfigStdin is how findings name the file read from standard input.
const checkConfigStdin = "<stdin>"

func newCheckConfigCommand() *cobra.Command {
	var output printFlags
	cmd := &cobra.Command{
		Use:   "check-config FILE...",
		Short: "Before enabling rotation: check Talos and kubelet config files offline",
		Long: `Check configuration files offline, before they are applied, for the change
that takes every kubelet's serving certificate away: kubelet serving-certificate
rotation turned on with no approver installed. Also reports manifest URLs that
follow a branch or "latest", approvers that do not bind SANs to nodes, and
metrics-server's --kubelet-insecure-tls against the kubelets' rotation setting.

Reads Talos machine configuration (v1alpha1 configs and patches, JSON patches,
and the Talos 1.14 KubeletConfig, KubeExternalManifestConfig and
KubeInlineManifestConfig documents), kubeadm configuration,
KubeletConfiguration and Kubernetes manifests. The files are checked as one
configuration: an approver installed by one file satisfies rotation turned on
in another, so pass a Talos control-plane config with its worker config and
patches together. "-" reads standard input. Nothing is fetched: a manifest URL
is judged by its address.
` + exitCodes("a finding is an error, or a file is not valid YAML"),
		Example: `  csrguard check-config controlplane.yaml worker.yaml patch.yaml
  helm template csrguard oci://ghcr.io/csrguard/charts/csrguard | csrguard check-config kubelet-config.yaml -
  csrguard check-config -o json controlplane.yaml
  csrguard check-config -o name worker.yaml   # the IDs of the findings`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOutput(output.format); err != nil {
				return err
			}
			files, err := readCheckConfigFiles(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			res, err := configcheck.CheckFiles(files)
			if err != nil {
				// A file that is not valid configuration is a problem
				// with the configuration, as an error finding is.
				return invalidInputError{err}
			}
			if err := output.print(cmd.OutOrStdout(), checkConfigOutput{res}); err != nil {
				return err
			}
			if n := res.Summary.Error; n > 0 {
				return findingsError{fmt.Errorf("%s in the configuration", plural(n, "error"))}
			}
			return nil
		},
	}
	var s flagSections
	output.addFlags(s.section("Output"))
	s.install(cmd)
	return cmd
}

// readCheckConfigFiles reads each named file, "-" from stdin (once), refusing
// anything larger than configcheck.MaxFileSize without reading it all.
func readCheckConfigFiles(stdin io.Reader, names []string) ([]configcheck.File, error) {
	var files []configcheck.File
	seenStdin := false
	for _, name := range names {
		var (
			r       io.Reader
			display = name
		)
		if name == "-" {
			if seenStdin {
				return nil, usageError{fmt.Errorf(`"-" (standard input) may be given once`)}
			}
			seenStdin, r, display = true, stdin, checkConfigStdin
		} else {
			f, err := os.Open(name)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			defer f.Close()
			r = f
		}
		data, err := io.ReadAll(io.LimitReader(r, configcheck.MaxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", display, err)
		}
		if len(data) > configcheck.MaxFileSize {
			return nil, fmt.Errorf("read %s: larger than the %d MiB limit of a configuration file", display, configcheck.MaxFileSize>>20)
		}
		files = append(files, configcheck.File{Name: display, Data: data})
	}
	return files, nil
}

// checkConfigOutput is what check-config prints: the configcheck.Result.
type checkConfigOutput struct{ configcheck.Result }

// names are the IDs of the findings, each once.
func (c checkConfigOutput) names() []string {
	var out []string
	for _, f := range c.Findings {
		if !slices.Contains(out, f.ID) {
			out = append(out, f.ID)
		}
	}
	return out
}

// table prints for people: a summary (the documents read, the rotation
// setting, what is installed), one row per finding (wide: with the
// document it is in), the fixes and the verdict.
func (c checkConfigOutput) table(w io.Writer, o tableOptions) error {
	var b strings.Builder
	if !o.noHeaders {
		c.writeSummary(&b)
	}
	if len(c.Findings) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		tw := newTabWriter(&b)
		if !o.noHeaders {
			fmt.Fprint(tw, "FILE:LINE\tSEVERITY\tID")
			if o.wide {
				fmt.Fprint(tw, "\tDOCUMENT")
			}
			fmt.Fprintln(tw, "\tMESSAGE")
		}
		for _, f := range c.Findings {
			fmt.Fprintf(tw, "%s:%d\t%s\t%s", f.File, f.Line, f.Severity, f.ID)
			if o.wide {
				fmt.Fprintf(tw, "\t%s", c.documentOf(f))
			}
			fmt.Fprintf(tw, "\t%s\n", f.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fixes := false
		for _, f := range c.Findings {
			if len(f.Fix) == 0 {
				continue
			}
			if !fixes {
				b.WriteString("\nFixes:\n")
				fixes = true
			}
			fmt.Fprintf(&b, "\n%s:%d %s\n", f.File, f.Line, f.ID)
			for i, x := range f.Fix {
				writeItem(&b, fmt.Sprintf("  %d. ", i+1), x)
			}
		}
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	worst := ""
	if n := c.Summary.Error; n > 0 {
		worst = plural(n, "error")
	}
	fmt.Fprintf(&b, "%s\n", verdict(worst, c.Summary.Warning, c.Summary.Info))
	// Names, URLs and values come from the files checked: no control
	// character in them reaches the terminal.
	_, err := io.WriteString(w, strings.Map(func(r rune) rune {
		if r != '\n' && unicode.IsControl(r) {
			return '?'
		}
		return r
	}, b.String()))
	return err
}

// writeSummary writes the lines above the findings.
func (c checkConfigOutput) writeSummary(b *strings.Builder) {
	byFile := map[string][]string{}
	var order []string
	for _, d := range c.Documents {
		if _, ok := byFile[d.File]; !ok {
			order = append(order, d.File)
		}
		byFile[d.File] = append(byFile[d.File], checkConfigDocument(d))
	}
	for _, f := range order {
		fmt.Fprintf(b, "%s: %s\n", f, strings.Join(byFile[f], ", "))
	}
	if len(order) == 0 {
		b.WriteString("No documents found.\n")
	}

	var on, off []string
	for _, s := range c.Settings {
		loc := fmt.Sprintf("%s:%d %s", s.File, s.Line, s.Path)
		if s.On {
			on = append(on, loc)
		} else {
			off = append(off, loc+": "+s.Value)
		}
	}
	rotation := string(c.Rotation)
	switch {
	case c.Rotation == configcheck.RotationUnknown:
		rotation += " (no kubelet configuration among the files)"
	case len(on) > 0:
		rotation += " (" + strings.Join(on, ", ") + ")"
	case len(off) > 0:
		rotation += " (" + strings.Join(off, ", ") + ")"
	default:
		rotation += " (the kubelet configuration does not turn it on)"
	}
	fmt.Fprintf(b, "Rotation: %s\n", rotation)
	var installs []string
	for _, m := range c.Manifests {
		if m.Component == "" {
			continue
		}
		how := m.Name
		if m.Source == "url" {
			how = "URL"
			if m.Ref != "" {
				how += " at " + m.Ref
			}
		}
		installs = append(installs, fmt.Sprintf("%s (%s:%d, %s)", m.Component, m.File, m.Line, how))
	}
	if len(installs) == 0 {
		installs = []string{"no approver or metrics-server"}
	}
	fmt.Fprintf(b, "Installs: %s\n", strings.Join(installs, ", "))
}

// documentOf names the document finding f is in: the last one of its file
// that starts at or before its line; "-" when none does.
func (c checkConfigOutput) documentOf(f configcheck.Finding) string {
	out := "-"
	for _, d := range c.Documents {
		if d.File == f.File && d.Line <= f.Line {
			out = checkConfigDocument(d)
		}
	}
	return out
}

// checkConfigDocument names a document for the summary line.
func checkConfigDocument(d configcheck.Document) string {
	var s string
	switch d.Format {
	case configcheck.FormatTalosV1Alpha1:
		s = "Talos v1alpha1 config"
	case configcheck.FormatTalosJSONPatch:
		s = "Talos JSON patch"
	case configcheck.FormatTalosDocument:
		s = "Talos " + d.Kind
	case configcheck.FormatUnknown:
		s = "unknown document"
	default:
		s = d.Kind
		if d.Name != "" {
			s += " " + d.Name
		}
		return fmt.Sprintf("%s (line %d)", s, d.Line)
	}
	if d.Format == configcheck.FormatTalosDocument && d.Name != "" {
		s += " " + d.Name
	}
	return fmt.Sprintf("%s (line %d)", s, d.Line)
}
