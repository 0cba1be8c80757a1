package controlplane

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// StartForTest starts a control plane in t's temporary directory and stops it
// when t ends, printing the tail of every component log if t failed. Under
// `go test -short` it skips t; otherwise missing binaries fail t, because an
// integration test that silently does not run proves nothing.
func StartForTest(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a local control plane; skipped with -short")
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	cp, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Logf("control plane ready in %s at %s", time.Since(start).Round(time.Millisecond), cp.URL)
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
		if t.Failed() {
			for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
				t.Logf("--- %s log tail (%s):\n%s", c, cp.LogFile(c), Tail(cp.LogFile(c), 40))
			}
		}
	})
	return cp
}

// Deadline returns a context that ends after d or with t.
func Deadline(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every 100ms until it holds, failing t when ctx ends
// first: tests wait on conditions, never on fixed sleeps.
func Eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() int { return freePort() }
