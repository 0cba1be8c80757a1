package cli

import (
	"slices"

	"github.com/go-logr/logr"
)

// deferredValues is a logr.LogSink that keeps the key/value pairs of WithValues and gives them to
// the sink it wraps only with a line that is written, after the names and before the line's own
// pairs, as WithValues would have.
//
// zap encodes WithValues' pairs at once, into a 1 KiB buffer copied from its parent's. A
// reconcile takes three such loggers (controller-runtime adds the CSR and a reconcile ID, the
// Reconciler the node) and mostly writes nothing: in a 10,000-CSR burst they were 96 MB of
// csrguard's 864 MB allocated, about 11%, and GC is 40% of csrguard's CPU there. Deferred, a
// logger costs a slice of its pairs, and only a written line pays for encoding them. What is
// written is the same (TestDeferredValuesWritesWhatZapWould), with one difference: a value is
// encoded when a line is written, so a pointer passed to WithValues and changed later logs as it
// is then (csrguard passes names, klog.KObj references and other values). A WithValues that is
// not string-keyed pairs is passed on at once, as before.
type deferredValues struct {
	sink   logr.LogSink
	values []any
}

var (
	_ logr.LogSink          = deferredValues{}
	_ logr.CallDepthLogSink = deferredValues{}
)

// deferValues wraps l's sink in deferredValues.
func deferValues(l logr.Logger) logr.Logger {
	sink := l.GetSink()
	if sink == nil {
		return l
	}
	if d, ok := sink.(logr.CallDepthLogSink); ok {
		sink = d.WithCallDepth(1) // deferredValues' own frame
	}
	return logr.New(deferredValues{sink: sink}).V(l.GetV())
}

// Init does nothing: l's logr.New initialised the wrapped sink, and deferValues counted this
// sink's frame.
func (deferredValues) Init(logr.RuntimeInfo) {}

func (s deferredValues) Enabled(level int) bool { return s.sink.Enabled(level) }

func (s deferredValues) Info(level int, msg string, kv ...any) {
	s.sink.Info(level, msg, s.with(kv)...)
}

func (s deferredValues) Error(err error, msg string, kv ...any) {
	s.sink.Error(err, msg, s.with(kv)...)
}

func (s deferredValues) WithValues(kv ...any) logr.LogSink {
	values := s.with(kv)
	if !wellFormed(kv) {
		// Given to the sink now, which reports the fault and drops what it cannot pair: kept,
		// a key without a value would pair with the key of a later line's first pair, and
		// zapr stops at a key that is not a string, which would drop every line's own pairs.
		return deferredValues{sink: s.sink.WithValues(values...)}
	}
	return deferredValues{sink: s.sink, values: values}
}

// wellFormed reports whether kv is pairs of a string key and a value.
func wellFormed(kv []any) bool {
	if len(kv)%2 != 0 {
		return false
	}
	for i := 0; i < len(kv); i += 2 {
		if _, ok := kv[i].(string); !ok {
			return false
		}
	}
	return true
}

func (s deferredValues) WithName(name string) logr.LogSink {
	return deferredValues{sink: s.sink.WithName(name), values: s.values}
}

func (s deferredValues) WithCallDepth(depth int) logr.LogSink {
	if d, ok := s.sink.(logr.CallDepthLogSink); ok {
		return deferredValues{sink: d.WithCallDepth(depth), values: s.values}
	}
	return s
}

// with returns the kept pairs followed by kv, in a new slice: loggers derived from one share its
// pairs and are used from many goroutines, and a caller may reuse the slice it passed.
func (s deferredValues) with(kv []any) []any {
	return append(slices.Clip(s.values), kv...)
}
