// Package human prints values for people: the one way csrguard writes a
// duration in its tables, messages and findings. It holds no other logic.
package human

import (
	"strconv"
	"time"
)

// units are the units Duration prints, largest first. Days are the largest:
// ages and certificate lifetimes read better in days than in weeks or years.
var units = []struct {
	size time.Duration
	name string
}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}

// Duration prints d in its two most significant units, truncated: 45s,
// 3m12s, 3h12m, 12d5h. A zero second unit is left out (3h, not 3h0m) and no
// smaller unit takes its place. Negative durations get a minus sign; under
// a second is 0s.
func Duration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	if d < time.Second {
		return "0s"
	}
	for i, u := range units[:len(units)-1] {
		if d < u.size {
			continue
		}
		s := sign + strconv.FormatInt(int64(d/u.size), 10) + u.name
		if next := units[i+1]; d%u.size >= next.size {
			s += strconv.FormatInt(int64(d%u.size/next.size), 10) + next.name
		}
		return s
	}
	return sign + strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
