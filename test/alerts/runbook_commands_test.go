package alerts

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csrguard/csrguard/internal/cli"
)

// pluginCommand is a `kubectl csrguard …` command in a runbook, up to the end
// of its code span, a comment or a pipe.
var pluginCommand = regexp.MustCompile("kubectl csrguard ([^`#|\\n]*)")

// TestRunbookPluginCommands: every `kubectl csrguard` command a runbook gives names a real subcommand and only flags it has, parsed by
// csrguard's own command tree. (kubectl auth can-i lines are run against a
// real API server by test/packaging.)
func TestRunbookPluginCommands(t *testing.T) {
	files, err := filepath.Glob(runbookDir + "/*.md")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pluginCommand.FindAllStringSubmatch(string(b), -1) {
			args := strings.Fields(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(m[1], "x"))
			if len(args) == 0 || strings.HasPrefix(args[0], "-") {
				continue
			}
			root := cli.New()
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == root {
				t.Errorf("%s: kubectl csrguard %s: no such subcommand (%v)", filepath.Base(path), m[1], err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%s: kubectl csrguard %s: %v", filepath.Base(path), strings.TrimSpace(m[1]), err)
			}
			ran++
		}
	}
	if ran == 0 {
		t.Fatal("no runbook has a kubectl csrguard command")
	}
}
