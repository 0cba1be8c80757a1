package human

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"under_a_second", 900 * time.Millisecond, "0s"},
		{"seconds", 45 * time.Second, "45s"},
		{"minute_and_seconds", 90 * time.Second, "1m30s"},
		{"whole_minutes", 3 * time.Minute, "3m"},
		{"hours_and_minutes", 3*time.Hour + 12*time.Minute + 59*time.Second, "3h12m"},
		{"whole_hours", 5 * time.Hour, "5h"},
		{"hours_no_minutes_some_seconds", 3*time.Hour + 30*time.Second, "3h"},
		{"days_and_hours", 2*24*time.Hour + 5*time.Hour + 30*time.Minute, "2d5h"},
		{"whole_days", 72 * time.Hour, "3d"},
		{"a_year", 364*24*time.Hour - 40*time.Minute, "363d23h"},
		{"negative", -2 * time.Minute, "-2m"},
		{"negative_under_a_second", -500 * time.Millisecond, "0s"},
		{"negative_mixed", -(25*time.Hour + time.Minute), "-1d1h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Duration(tc.d); got != tc.want {
				t.Errorf("Duration(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}
