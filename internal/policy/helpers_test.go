package policy_test

import (
	"encoding/asn1"
	"net/netip"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/internal/policy"
)

const (
	ds = certificatesv1.UsageDigitalSignature
	sa = certificatesv1.UsageServerAuth
	ke = certificatesv1.UsageKeyEncipherment
	ca = certificatesv1.UsageClientAuth
)

var (
	oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOU         = asn1.ObjectIdentifier{2, 5, 4, 11}
)

// outcome is the part of a Decision most tests assert: the verdict, its reason and the check that
// made it.
type outcome struct {
	Verdict policy.Verdict
	Reason  policy.Reason
	Check   string
}

func approved() outcome { return outcome{Verdict: policy.Approve, Reason: policy.AllChecksPassed} }
func denied(check string, r policy.Reason) outcome {
	return outcome{Verdict: policy.Deny, Reason: r, Check: check}
}
func held(check string, r policy.Reason) outcome {
	return outcome{Verdict: policy.Hold, Reason: r, Check: check}
}

// decidedBy returns the outcome of d, naming the first failed check that matches it.
func decidedBy(d policy.Decision) outcome {
	o := outcome{Verdict: d.Verdict, Reason: d.Reason}
	for _, c := range d.Checks {
		if c.Outcome == policy.Fail && c.Verdict == d.Verdict && c.Reason == d.Reason {
			o.Check = c.Check
			break
		}
	}
	return o
}

// General names for csrtest.SANExtension.
func dnsGN(name string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(name)}
}

func ipGN(addr string) asn1.RawValue {
	// AsSlice keeps IPv4-mapped IPv6 addresses at 16 bytes.
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: netip.MustParseAddr(addr).AsSlice()}
}

func otherNameGN(t testing.TB) asn1.RawValue {
	upn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, "admin@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	oid := mustMarshal(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3})
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, upn...)}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
