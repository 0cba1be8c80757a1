package severity

import (
	"encoding/json"
	"testing"
)

// TestText pins the encodings: they are in doctor's and check-config's JSON
// output, and scripts match on them.
func TestText(t *testing.T) {
	tests := []struct {
		level Level
		text  string
	}{
		{Info, "info"},
		{Warning, "warning"},
		{Error, "error"},
		{Critical, "critical"},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.level)
		if err != nil || string(b) != `"`+tt.text+`"` {
			t.Errorf("json.Marshal(%d) = %s, %v; want %q", int(tt.level), b, err, tt.text)
		}
		var got Level
		if err := json.Unmarshal(b, &got); err != nil || got != tt.level {
			t.Errorf("json.Unmarshal(%s) = %v, %v; want %v", b, got, err, tt.level)
		}
	}
}

func TestInvalid(t *testing.T) {
	for _, l := range []Level{0, Critical + 1} {
		if b, err := l.MarshalText(); err == nil {
			t.Errorf("Level(%d).MarshalText() = %q, want an error", int(l), b)
		}
	}
	var l Level
	for _, s := range []string{"", "Critical", "fatal"} {
		if err := l.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", s, l)
		}
	}
}

// TestOrder: callers compare levels (doctor --fail-on, sorting by urgency).
func TestOrder(t *testing.T) {
	if !(Info < Warning && Warning < Error && Error < Critical) {
		t.Errorf("levels out of order: %d %d %d %d", Info, Warning, Error, Critical)
	}
}
