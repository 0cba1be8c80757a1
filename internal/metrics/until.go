package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Until is a gauge that is 1 until a time and 0 after it, judged at each
// scrape: a state that ends by itself when a window passes (the breaker)
// reads 0 from that moment, not from the next event that happens to reset it.
type Until struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	now  func() time.Time
	end  time.Time
}

// NewUntil returns an Until that is 0 until Set is called, read with time.Now.
func NewUntil(name, help string) *Until {
	return &Until{desc: prometheus.NewDesc(name, help, nil, nil), now: time.Now}
}

// SetClock makes the gauge read the time from now (the reconciler's clock, so
// that tests with a fake clock see what production sees).
func (u *Until) SetClock(now func() time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.now = now
}

// Set makes the gauge 1 until end; a zero or past end makes it 0.
func (u *Until) Set(end time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.end = end
}

// Describe implements prometheus.Collector.
func (u *Until) Describe(ch chan<- *prometheus.Desc) { ch <- u.desc }

// Collect implements prometheus.Collector.
func (u *Until) Collect(ch chan<- prometheus.Metric) {
	u.mu.Lock()
	v := 0.0
	if u.now().Before(u.end) {
		v = 1
	}
	u.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(u.desc, prometheus.GaugeValue, v)
}
