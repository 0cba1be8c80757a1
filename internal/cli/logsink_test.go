package cli

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// TestDeferredValuesWritesWhatZapWould: the controller's logger, with WithValues deferred, writes
// the same lines as the zap logger it wraps, in both formats and at two verbosities.
func TestDeferredValuesWritesWhatZapWould(t *testing.T) {
	script := func(l logr.Logger) {
		l.Info("plain", "k", 1)
		a := l.WithName("csr-approver").WithValues("controller", "csr", "CertificateSigningRequest", klog.KRef("", "csr-1"))
		a.Info("with values", "reason", "NodeAddressMatch")
		b := a.WithValues("node", "n1").WithName("supersede")
		b.Error(errors.New("boom"), "failed", "k", "v")
		b.V(1).Info("verbose", "n", 2)
		l.V(1).WithValues("x", 1).Info("verbose, values after V")
		a.WithValues("dup", 1).Info("a key twice", "dup", 2)
		kv := []any{"reused", "first"}
		c := a.WithValues(kv...)
		kv[1] = "second" // zap encoded "first" at WithValues; a deferred sink must have copied it
		c.Info("caller reused its slice")
	}
	ts := regexp.MustCompile(`\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)`)
	for _, format := range []string{"text", "json"} {
		for _, verbosity := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/v=%d", format, verbosity), func(t *testing.T) {
				var got, want bytes.Buffer
				o := logOptions{format: format, verbosity: verbosity}
				deferred, err := o.loggerTo(zapcore.AddSync(&got))
				if err != nil {
					t.Fatal(err)
				}
				direct, err := o.loggerTo(zapcore.AddSync(&want))
				if err != nil {
					t.Fatal(err)
				}
				sink, ok := direct.GetSink().(deferredValues)
				if !ok {
					t.Fatalf("the controller's logger sink is %T, want deferredValues", direct.GetSink())
				}
				script(deferred)
				script(logr.New(sink.sink))
				g, w := ts.ReplaceAllString(got.String(), "TS"), ts.ReplaceAllString(want.String(), "TS")
				if g != w {
					t.Errorf("deferred values wrote\n%s\nzap wrote\n%s", g, w)
				}
				if want.Len() == 0 {
					t.Error("nothing written")
				}
			})
		}
	}
}

// TestDeferredValuesOddPairs: a key without a value, or a key that is not a string, in
// WithValues is reported and dropped, and the pairs of later lines stay pairs and are written.
// (zap's report lacks the deferred values, so it is not in the script above.)
func TestDeferredValuesOddPairs(t *testing.T) {
	var buf bytes.Buffer
	l, err := (&logOptions{format: "json"}).loggerTo(zapcore.AddSync(&buf))
	if err != nil {
		t.Fatal(err)
	}
	l.WithValues("controller", "csr").WithValues("odd").Info("decided", "k", "v") //nolint:loggercheck // the odd key is the case under test
	l.WithValues("controller", "csr").WithValues(42, "answer").Info("decided", "reason", "NodeAddressMatch")
	for _, want := range []string{
		`"msg":"odd number of arguments passed as key-value pairs for logging","ignored key":"odd"}`,
		`"msg":"decided","controller":"csr","k":"v"}`,
		`"msg":"non-string key argument passed to logging, ignoring all later arguments","invalid key":42}`,
		`"msg":"decided","controller":"csr","reason":"NodeAddressMatch"}`,
	} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("no line has %s:\n%s", want, buf.String())
		}
	}
}

// TestDeferredValuesConcurrent: loggers derived from one shared logger, used from many
// goroutines, each write their own values (run with -race).
func TestDeferredValuesConcurrent(t *testing.T) {
	var buf bytes.Buffer
	l, err := (&logOptions{format: "json"}).loggerTo(zapcore.Lock(zapcore.AddSync(&buf)))
	if err != nil {
		t.Fatal(err)
	}
	base := l.WithValues("controller", "csr")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				base.WithValues("worker", i).WithValues("item", j).Info("decided")
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		for _, j := range []int{0, 49} {
			line := fmt.Sprintf(`"controller":"csr","worker":%d,"item":%d}`, i, j)
			if !bytes.Contains(buf.Bytes(), []byte(line)) {
				t.Errorf("no line ends %s", line)
			}
		}
	}
}
