package netns_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/test/netns"
)

func TestPool(t *testing.T) {
	p := netns.NewPool(netip.MustParsePrefix("198.51.100.0/30"), netip.MustParsePrefix("2001:db8::/127"))
	var got []string
	for range 3 {
		got = append(got, p.Next().String())
	}
	// .0 (network) and .3 (broadcast) are skipped; IPv6 has no broadcast.
	if diff := cmp.Diff(got, []string{"198.51.100.1", "198.51.100.2", "2001:db8::1"}); diff != "" {
		t.Errorf("Next() (-got +want):\n%s", diff)
	}
	defer func() {
		if recover() == nil {
			t.Error("Next() on an exhausted pool did not panic")
		}
	}()
	p.Next()
}

func TestDefaultPool(t *testing.T) {
	p := netns.NewPool()
	for range 254 { // .1 to .254
		p.Next()
	}
	if got := p.Next(); got != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("Next() after TEST-NET-2 = %v, want 203.0.113.1", got)
	}
}
