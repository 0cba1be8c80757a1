package cli

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The exit codes of every command.
const (
	exitFindings  = 1 // it ran and found problems
	exitUsage     = 2 // a bad flag or argument
	exitCannotRun = 3 // it could not run: cluster unreachable, forbidden, kubeconfig invalid
)

// exitCodes ends the help of the commands run from a laptop; findings says
// when the command exits 1, empty when it never does.
func exitCodes(findings string) string {
	s := "\nExit codes:\n  0  success\n"
	if findings != "" {
		s += fmt.Sprintf("  %d  %s\n", exitFindings, findings)
	}
	return s + fmt.Sprintf("  %d  usage: a bad flag or argument\n  %d  could not run: the cluster unreachable, a request forbidden, the kubeconfig invalid", exitUsage, exitCannotRun)
}

// usageError marks errors in how csrguard was invoked (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// helpHint is a usage error cobra found in how command was invoked; ExitCode
// follows it with where to read the usage, as kubectl does.
type helpHint struct {
	error
	command string
}

func (e helpHint) Unwrap() error { return e.error }

// findingsError marks a command that ran and found problems (exit code 1);
// its output has said what they are, so ExitCode prints nothing more.
type findingsError struct{ error }

func (e findingsError) Unwrap() error { return e.error }

// invalidInputError marks input that a command checks and found invalid, a
// configuration file that is not YAML (exit code 1, like a finding); its
// message is the finding.
type invalidInputError struct{ error }

func (e invalidInputError) Unwrap() error { return e.error }

// ExitCode prints err on cmd's standard error and returns the process exit
// code for it: 1 when the command found problems, 2 for usage errors, 3 when
// it could not run. A forbidden request is followed by the permission it
// needed.
func ExitCode(cmd *cobra.Command, err error) int {
	w := cmd.ErrOrStderr()
	if !errors.As(err, new(findingsError)) {
		fmt.Fprintln(w, "Error:", err)
		if hint, ok := errors.AsType[helpHint](err); ok {
			fmt.Fprintf(w, "See '%s --help'.\n", hint.command)
		}
		if need := neededPermission(err); need != "" {
			fmt.Fprintf(w, "%s needs %s: ask for it, or run as someone who has it (--as, --context, --kubeconfig).\n", cmd.Root().DisplayName(), need)
		}
	}
	switch {
	case errors.As(err, new(usageError)):
		return exitUsage
	case errors.As(err, new(findingsError)), errors.As(err, new(invalidInputError)):
		return exitFindings
	}
	return exitCannotRun
}

// forbiddenMessage matches the API server's reason for a forbidden request:
// `User "u" cannot list resource "nodes" in API group "" at the cluster scope`,
// or `… in the namespace "ns"`.
var forbiddenMessage = regexp.MustCompile(`cannot (\S+) resource "([^"]*)" in API group "([^"]*)"(?: in the namespace "([^"]*)")?`)

// neededPermission names what a forbidden request needed, as RBAC spells
// it: `list on nodes, cluster-wide`, `get on leases.coordination.k8s.io
// "csrguard" in namespace "csrguard"`. It is empty when err is not a
// Forbidden answer of the API server.
func neededPermission(err error) string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Reason != metav1.StatusReasonForbidden {
		return ""
	}
	st := status.Status()
	verb, resource, group, namespace := "access", "", "", ""
	if d := st.Details; d != nil {
		resource, group = d.Kind, d.Group
	}
	if m := forbiddenMessage.FindStringSubmatch(st.Message); m != nil {
		verb, resource, group, namespace = m[1], m[2], m[3], m[4]
	}
	if resource == "" {
		return ""
	}
	// RBAC's spelling: resource.group/subresource.
	what, sub, _ := strings.Cut(resource, "/")
	if group != "" {
		what += "." + group
	}
	if sub != "" {
		what += "/" + sub
	}
	if d := st.Details; d != nil && d.Name != "" {
		what += fmt.Sprintf(" %q", d.Name)
	}
	if namespace != "" {
		return fmt.Sprintf("%s on %s in namespace %q", verb, what, namespace)
	}
	return fmt.Sprintf("%s on %s, cluster-wide", verb, what)
}
