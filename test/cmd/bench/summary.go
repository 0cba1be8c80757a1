package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sizes is the value of --n: one or more node counts, comma-separated, each
// run in full (rounds and probe phase) in the order given.
type sizes []int

func (s *sizes) String() string {
	parts := make([]string, len(*s))
	for i, n := range *s {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// Set parses "2000" or "2000,10000"; each size must be a whole number >= 1,
// and no size may repeat.
func (s *sizes) Set(v string) error {
	var got sizes
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("want node counts >= 1, comma-separated, got %q", v)
		}
		if slices.Contains(got, n) {
			return fmt.Errorf("%d given twice in %q", n, v)
		}
		got = append(got, n)
	}
	*s = got
	return nil
}

// sizeSummary is what one size's run measured, for the summary table.
type sizeSummary struct {
	n      int
	rounds [][]result
	probes *probeResult
}

// ratio is the median over rounds of approver's "all approved after" over
// the ceiling's, or 0 when they never ran together.
func (s sizeSummary) ratio(approver string) float64 {
	total, _ := ceilingRatios(s.rounds, approver)
	if len(total) == 0 {
		return 0
	}
	return medianF(total)
}

// guard returns every round's result of csrguard with its defaults.
func (s sizeSummary) guard() []result {
	var rs []result
	for _, results := range s.rounds {
		if r := find(results, csrguardDefaults); r != nil {
			rs = append(rs, *r)
		}
	}
	return rs
}

// rssPerNodeKiB is the growth of csrguard's median peak RSS per Node (each
// with its CSR) from the smallest size to s: the slope between the two
// runs, in KiB. ok is false when there is no smaller size to compare with.
func rssPerNodeKiB(smallest, s sizeSummary) (kib float64, ok bool) {
	a, b := smallest.guard(), s.guard()
	if s.n <= smallest.n || len(a) == 0 || len(b) == 0 {
		return 0, false
	}
	rss := func(r result) float64 { return r.peakRSSMB }
	return (median(b, rss) - median(a, rss)) * 1024 / float64(s.n-smallest.n), true
}

// printSummary writes one Markdown row per size: what the README's
// Performance section quotes.
func printSummary(w io.Writer, summaries []sizeSummary) {
	if len(summaries) == 0 {
		return
	}
	smallest := summaries[0]
	for _, s := range summaries {
		if s.n < smallest.n {
			smallest = s
		}
	}
	fmt.Fprintln(w, "\nSummary (medians of rounds; csrguard's own figures are with its defaults):")
	fmt.Fprintln(w)
	// A ratio column per csrguard variant that ran.
	var variants []string
	for _, v := range csrguardVariants {
		for _, s := range summaries {
			if s.ratio(v) != 0 && !slices.Contains(variants, v) {
				variants = append(variants, v)
			}
		}
	}
	fmt.Fprint(w, "| N |")
	for _, v := range variants {
		fmt.Fprintf(w, " %s ÷ ceiling |", describe(v))
	}
	fmt.Fprintln(w, " latency p99 | peak RSS | RSS per Node+CSR | probe sweep ÷ interval | doctor |")
	fmt.Fprintln(w, "|---:|"+strings.Repeat("---:|", len(variants))+"---:|---:|---:|---:|---:|")
	for _, s := range summaries {
		cell := func(v float64, format string) string {
			if v == 0 {
				return "—"
			}
			return fmt.Sprintf(format, v)
		}
		p99, rss, perNode := "—", "—", "—"
		if g := s.guard(); len(g) > 0 {
			p99 = ms(medianDur(g, func(r result) time.Duration { return r.p99 }))
			rss = fmt.Sprintf("%.0f MB", median(g, func(r result) float64 { return r.peakRSSMB }))
		}
		if kib, ok := rssPerNodeKiB(smallest, s); ok {
			perNode = fmt.Sprintf("%.2f KiB (from N=%d)", kib, smallest.n)
		}
		sweep, doctor := "—", "—"
		if p := s.probes; p != nil && len(p.sweeps) > 0 {
			sweep = fmt.Sprintf("%s ÷ %s = %.3f (%d kubelets)", secs(p.maxSweep()), p.interval, p.sweepRatio(), p.nodes)
			if p.doctorTime > 0 {
				doctor = secs(p.doctorTime)
			}
		}
		fmt.Fprintf(w, "| %d |", s.n)
		for _, v := range variants {
			fmt.Fprintf(w, " %s |", cell(s.ratio(v), "%.2f×"))
		}
		fmt.Fprintf(w, " %s | %s | %s | %s | %s |\n", p99, rss, perNode, sweep, doctor)
	}
}
