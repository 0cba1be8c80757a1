package cli

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/csrguard/csrguard/internal/policy"
)

// flagSections groups a command's flags under titled sections in --help, the
// way Kubernetes components print theirs.
type flagSections struct {
	order []string
	sets  map[string]*pflag.FlagSet
}

// section returns the flag set titled name, creating it in order.
func (s *flagSections) section(name string) *pflag.FlagSet {
	if s.sets == nil {
		s.sets = map[string]*pflag.FlagSet{}
	}
	if fs, ok := s.sets[name]; ok {
		return fs
	}
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	s.order = append(s.order, name)
	s.sets[name] = fs
	return fs
}

// install adds every section's flags to cmd and prints them by section.
func (s *flagSections) install(cmd *cobra.Command) {
	for _, name := range s.order {
		cmd.Flags().AddFlagSet(s.sets[name])
	}
	cmd.SetUsageFunc(func(c *cobra.Command) error {
		s.print(c.OutOrStderr(), c)
		return nil
	})
	cmd.SetHelpFunc(func(c *cobra.Command, _ []string) {
		out := c.OutOrStdout()
		fmt.Fprintln(out, strings.TrimSpace(c.Long))
		fmt.Fprintln(out)
		s.print(out, c)
	})
}

func (s *flagSections) print(w io.Writer, c *cobra.Command) {
	fmt.Fprintf(w, "Usage:\n  %s\n", c.UseLine())
	if c.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", c.Example)
	}
	for _, name := range s.order {
		fmt.Fprintf(w, "\n%s flags:\n%s", name, s.sets[name].FlagUsagesWrapped(100))
	}
	if c.HasAvailableInheritedFlags() {
		fmt.Fprintf(w, "\nGlobal flags:\n%s", c.InheritedFlags().FlagUsagesWrapped(100))
	}
}

// flagError is an error in one flag's value; its message names the flag.
func flagError(flag string, format string, args ...any) error {
	return usageError{fmt.Errorf("--%s %s", flag, fmt.Sprintf(format, args...))}
}

// parsePrefixes parses CIDRs (or single addresses, taken as /32 or /128).
func parsePrefixes(flag string, values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, policy.NormalisePrefix(p.Masked()))
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, flagError(flag, "must hold CIDRs or IP addresses, got %q", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// parseAddrs parses IP addresses.
func parseAddrs(flag string, values []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, v := range values {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return nil, flagError(flag, "must hold IP addresses, got %q", v)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}
