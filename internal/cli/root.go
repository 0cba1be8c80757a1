// Package cli is csrguard's command line: the cobra root command and one file
// per subcommand. It is the only place that defines flags; it turns raw
// Options into the parsed configuration the other packages take, prints
// what they compute (tables for people; JSON, YAML, JSONPath and names for
// scripts), and maps errors to exit codes. It holds no policy or Kubernetes
// logic of its own.
package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// completionPlugin is the name kubectl looks for to complete the plugin's
// arguments; `make build` links it to the csrguard binary.
const completionPlugin = "kubectl_complete-csrguard"

// New returns the csrguard root command with every subcommand.
func New() *cobra.Command {
	root := &cobra.Command{
		Use:   "csrguard",
		Short: "Approve, monitor and diagnose kubelet serving certificates",
		Long: `csrguard approves kubelet serving certificate requests (signer
kubernetes.io/kubelet-serving) with a strict policy: a node gets a certificate
only for names and addresses that are really its own, never for the API
server's. It also monitors every kubelet's serving certificate and diagnoses
clusters where kubelets have none ("remote error: tls: internal error").

Exit codes: 0 success; 1 the command found problems (doctor, certs,
preflight and check-config findings, a deny from explain); 2 usage error (a
bad flag or argument); 3 could not run (the cluster unreachable, a request
forbidden, the kubeconfig invalid).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	switch name := filepath.Base(os.Args[0]); {
	case name == completionPlugin:
		// kubectl completes `kubectl csrguard …` by running
		// kubectl_complete-csrguard with the words typed so far.
		root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, os.Args[1:]...))
		fallthrough
	case strings.HasPrefix(name, "kubectl-"):
		// Invoked as a kubectl plugin: help and errors say "kubectl csrguard".
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl csrguard"}
	}
	root.AddCommand(newControllerCommand(), newDoctorCommand(), newCertsCommand(), newPreflightCommand(), newExplainCommand(), newApproveCommand(), newCheckConfigCommand(), newVersionCommand())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{helpHint{err, c.CommandPath()}}
	})
	// Wrong arguments are usage errors too (exit code 2), like wrong flags.
	for _, c := range append(root.Commands(), root) {
		if c.Args != nil {
			args := c.Args
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError{helpHint{err, c.CommandPath()}}
				}
				return nil
			}
		}
	}
	registerFlagCompletions(root)
	root.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	root.Args = func(c *cobra.Command, a []string) error {
		if len(a) > 0 {
			return usageError{helpHint{fmt.Errorf("unknown command %q for %q", a[0], c.CommandPath()), c.CommandPath()}}
		}
		return nil
	}
	return root
}
