// Package cli is csrguard's command line: the cobra root command and one file
// per subcommand. It is the only place that defines flags; it turns raw
// Options into the parsed configuration the other packages take, and maps
// errors to exit codes. It holds no policy or Kubernetes logic of its own.
package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// New returns the csrguard root command with every subcommand.
func New() *cobra.Command {
	root := &cobra.Command{
		Use:   "csrguard",
		Short: "Approve, monitor and diagnose kubelet serving certificates",
		Long: `csrguard approves kubelet serving certificate requests (signer
kubernetes.io/kubelet-serving) with a strict policy: a node gets a certificate
only for names and addresses that are really its own, never for the API
server's. It also monitors every kubelet's serving certificate and diagnoses
clusters where kubelets have none ("remote error: tls: internal error").`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-") {
		// Invoked as a kubectl plugin: help and errors say "kubectl csrguard".
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl csrguard"}
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.AddCommand(newControllerCommand(), newDoctorCommand(), newCertsCommand(), newPreflightCommand(), newExplainCommand(), newApproveCommand(), newCheckConfigCommand(), newVersionCommand())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
	})
	// Wrong arguments are usage errors too (exit code 2), like wrong flags.
	for _, c := range append(root.Commands(), root) {
		if c.Args != nil {
			args := c.Args
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError{fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
				}
				return nil
			}
		}
	}
	root.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	root.Args = func(c *cobra.Command, a []string) error {
		if len(a) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q\nSee '%s --help'.", a[0], c.CommandPath(), c.CommandPath())}
		}
		return nil
	}
	return root
}

// usageError marks errors in how csrguard was invoked (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// findingsError marks a command that ran but found problems (exit code 1),
// for doctor-like commands; its message has already been printed.
type findingsError struct{ error }

func (e findingsError) Unwrap() error { return e.error }

// ExitCode prints err to stderr and returns the process exit code for it:
// 2 for usage errors, 1 otherwise.
func ExitCode(err error) int {
	var fe findingsError
	if !errors.As(err, &fe) {
		fmt.Fprintln(os.Stderr, "Error:", err)
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
