package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// completionTimeout bounds the API calls made to complete a word: a shell
// waiting on a TAB must not hang on an unreachable cluster.
const completionTimeout = 5 * time.Second

// completeCSRs completes the names of kubelet-serving CSRs (only pending
// ones with pendingOnly) in the cluster the command's flags point at, each
// described by its node and state. Without pendingOnly it completes one
// name, for commands that take one.
func completeCSRs(ko *kubeOptions, pendingOnly bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if !pendingOnly && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, err := ko.restConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		csrs, err := kube.ListServingCSRs(ctx, cs)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for i := range csrs {
			csr := &csrs[i]
			if (pendingOnly && servingcsr.IsFinal(csr)) || slices.Contains(args, csr.Name) || !strings.HasPrefix(csr.Name, toComplete) {
				continue
			}
			who, ok := servingcsr.NodeName(csr.Spec.Username)
			if !ok {
				who = csr.Spec.Username
			}
			out = append(out, cobra.CompletionWithDesc(csr.Name, who+", "+string(servingcsr.StateOf(csr))))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// flagValues are the values of the flags that take one of a few words.
var flagValues = map[string][]cobra.Completion{
	"output":  {outputTable, outputWide, outputJSON, outputYAML, outputName, "jsonpath=", "jsonpath-file="},
	"sort-by": {sortByNode, sortByExpiry},
	"fail-on": {"critical", "warning"},
}

// registerFlagCompletions completes, on every subcommand, the flags that
// take one of a few words, and --context from the kubeconfig.
func registerFlagCompletions(root *cobra.Command) {
	for _, c := range root.Commands() {
		for name, values := range flagValues {
			if c.Flags().Lookup(name) == nil {
				continue
			}
			directive := cobra.ShellCompDirectiveNoFileComp
			if name == "output" {
				directive |= cobra.ShellCompDirectiveNoSpace // jsonpath= goes on
			}
			_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, directive))
		}
		if c.Flags().Lookup("context") != nil {
			_ = c.RegisterFlagCompletionFunc("context", completeContexts)
		}
	}
}

// completeContexts completes --context from the kubeconfig --kubeconfig or
// $KUBECONFIG names.
func completeContexts(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath, _ = cmd.Flags().GetString("kubeconfig")
	cfg, err := rules.Load()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for name := range cfg.Contexts {
		if strings.HasPrefix(name, toComplete) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}
