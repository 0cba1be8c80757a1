// Command csrguard approves, monitors and diagnoses kubelet serving
// certificates. Installed as kubectl-csrguard it is also a kubectl plugin.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/csrguard/csrguard/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := cli.New()
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(cli.ExitCode(cmd, err))
	}
}
