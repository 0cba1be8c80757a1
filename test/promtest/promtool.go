package promtest

import (
	"os"
	"path/filepath"
	"testing"
)

// ToolsBinEnv names the environment variable that holds the directory with
// the test tools hack/build-tools.sh builds (promtool and helm).
const ToolsBinEnv = "CSRGUARD_TOOLS_BIN"

// Promtool returns the path of promtool in $CSRGUARD_TOOLS_BIN (see Tool).
func Promtool(tb testing.TB) string { return Tool(tb, "promtool") }

// Tool returns the path of the named tool in $CSRGUARD_TOOLS_BIN. Without
// the variable it skips tb under `go test -short` and fails it otherwise: a
// test that silently does not run proves nothing.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	dir := os.Getenv(ToolsBinEnv)
	if dir == "" {
		if testing.Short() {
			tb.Skipf("needs %s in $%s; skipped with -short", name, ToolsBinEnv)
		}
		tb.Fatalf("$%s is not set: run hack/test.sh, or set it to the directory `hack/build-tools.sh` prints", ToolsBinEnv)
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		tb.Fatalf("no executable %s in $%s=%s: %v", name, ToolsBinEnv, dir, err)
	}
	return p
}
