// Package severity is the one scale of urgency csrguard's checks report on:
// the doctor's findings (package diagnose) and check-config's (package
// configcheck). It owns the levels and their text encoding, which scripts
// read in JSON output; it knows nothing of what is found.
package severity

import "fmt"

// Level says how urgent a finding is. The zero value is not a level.
type Level int

// The levels, least urgent first. Each package reports the levels that apply
// to it: the doctor Info, Warning and Critical (a live cluster is broken now);
// check-config Info, Warning and Error (a file would break the cluster once
// applied).
const (
	// Info is worth knowing; nothing is wrong.
	Info Level = iota + 1
	// Warning weakens security, or will break something if left alone.
	Warning
	// Error breaks the cluster when the configuration is applied.
	Error
	// Critical is broken now: kubelets serve no valid certificate, or soon will not.
	Critical
)

// levels are the valid levels, least urgent first.
var levels = []Level{Info, Warning, Error, Critical}

// String returns "info", "warning", "error" or "critical".
func (l Level) String() string {
	switch l {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Error:
		return "error"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// MarshalText encodes l as its String; the zero value and unknown levels are
// an error, so that JSON output never holds a level no script knows.
func (l Level) MarshalText() ([]byte, error) {
	switch l {
	case Info, Warning, Error, Critical:
		return []byte(l.String()), nil
	}
	return nil, fmt.Errorf("invalid severity %d", int(l))
}

// UnmarshalText decodes "info", "warning", "error" or "critical".
func (l *Level) UnmarshalText(b []byte) error {
	for _, v := range levels {
		if string(b) == v.String() {
			*l = v
			return nil
		}
	}
	return fmt.Errorf("invalid severity %q", b)
}
