package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/csrguard/csrguard/internal/buildinfo"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the csrguard version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, rev, goV := buildinfo.Get()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "csrguard %s (revision %s, %s)\n", v, rev, goV)
			return err
		},
	}
}
