package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}
)

func (e *evaluation) signer(context.Context) (CheckResult, error) {
	if e.req.SignerName != servingcsr.SignerName {
		return failed(Deny, SignerNotKubeletServing, "signer %q is not %s", e.req.SignerName, servingcsr.SignerName)
	}
	return passed("signer is %s", servingcsr.SignerName)
}

func (e *evaluation) requester(context.Context) (CheckResult, error) {
	name, ok := servingcsr.NodeName(e.req.Username)
	if !ok {
		return failed(Deny, RequesterNotNode, "username %q is not system:node:<node name>", e.req.Username)
	}
	e.nodeName = name
	for _, g := range []string{"system:nodes", "system:authenticated"} {
		if !slices.Contains(e.req.Groups, g) {
			return failed(Deny, RequesterGroupsInvalid, "groups %q lack %q", e.req.Groups, g)
		}
	}
	return passed("node %q in groups system:nodes and system:authenticated", name)
}

func (e *evaluation) requestEncoding(context.Context) (CheckResult, error) {
	parse, verified := servingcsr.Parse, "with a valid signature"
	if e.req.SignatureChecked {
		parse, verified = servingcsr.ParseUnverified, "whose signature the API server verified"
	}
	csr, err := parse(e.req.PEM)
	if err != nil {
		reason := MalformedRequest
		if perr, ok := errors.AsType[*servingcsr.ParseError](err); ok {
			reason = Reason(perr.Reason)
		}
		return failed(Deny, reason, "%v", err)
	}
	for _, ip := range csr.IPAddresses {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			return failed(Deny, MalformedRequest, "IP SAN of %d bytes", len(ip))
		}
		e.ips = append(e.ips, addr.Unmap())
	}
	for _, name := range csr.DNSNames {
		e.dnsNames = append(e.dnsNames, normaliseDNS(name))
	}
	e.csr = csr
	return passed("one PEM certificate request %s", verified)
}

func (e *evaluation) subject(context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	s := e.csr.Subject
	// Count attributes, not fields: crypto/x509 keeps only the last CN and only string-valued
	// O values, while other TLS stacks may read the first or every one.
	var cns, orgs int
	for _, atv := range s.Names {
		switch {
		case atv.Type.Equal(oidCommonName):
			cns++
		case atv.Type.Equal(oidOrganization):
			orgs++
		default:
			return failed(Deny, SubjectMismatch, "subject attribute %v is not allowed; only CN and O are", atv.Type)
		}
	}
	if cns != 1 {
		return failed(Deny, SubjectMismatch, "subject has %d CN attributes, want 1", cns)
	}
	if s.CommonName != e.req.Username {
		return failed(Deny, SubjectMismatch, "subject CN %q does not match username %q", s.CommonName, e.req.Username)
	}
	if orgs != 1 || !slices.Equal(s.Organization, []string{"system:nodes"}) {
		return failed(Deny, OrganizationInvalid, "subject O %q is not [system:nodes]", s.Organization)
	}
	return passed("CN %q, O [system:nodes]", s.CommonName)
}

func (e *evaluation) sanTypes(context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	csr := e.csr
	if len(csr.EmailAddresses) > 0 {
		return failed(Deny, SANTypeForbidden, "email SAN %q is not allowed", csr.EmailAddresses[0])
	}
	if len(csr.URIs) > 0 {
		return failed(Deny, SANTypeForbidden, "URI SAN %q is not allowed", csr.URIs[0].String())
	}
	// crypto/x509 silently drops otherName, directoryName and other general names; read the
	// extension itself so that nothing but DNS names and IP addresses gets through.
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(oidSAN) {
			if err := onlyDNSAndIP(ext.Value); err != nil {
				return failed(Deny, SANTypeForbidden, "%v", err)
			}
		}
	}
	n := len(csr.DNSNames) + len(csr.IPAddresses)
	if n == 0 {
		return failed(Deny, NoSANs, "request has no DNS or IP SAN")
	}
	if n > e.cfg.MaxSANs {
		return failed(Deny, TooManySANs, "request has %d SANs, more than the maximum of %d", n, e.cfg.MaxSANs)
	}
	// After parsing, every requested extension is in Extensions (ExtraExtensions is only read
	// when creating a request). The parser already rejects duplicate extensions.
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSAN) {
			return failed(Deny, ExtensionForbidden, "extension %v is not allowed; only subjectAltName is", ext.Id)
		}
	}
	for _, name := range csr.DNSNames {
		if why := invalidDNSName(name); why != "" {
			return failed(Deny, DNSNameInvalid, "DNS SAN %q is not a valid DNS name: %s", name, why)
		}
		// Resolvers (inet_aton) and URL parsers turn "10.1", "010.0.0.1" or "0x0a000001" into
		// an address without asking DNS, and some clients match such a DNS SAN against the
		// address they dialled. The kubelet puts a Hostname that parses as an IP into an IP
		// SAN; only an InternalDNS or ExternalDNS holding an IP becomes such a DNS SAN. Deny
		// it rather than run it through every address rule. A name with a non-numeric label
		// ("cn-hangzhou.192.168.0.5", Alibaba Cloud's node names) is a name to all of them.
		if readsAsIPv4(name) {
			return failed(Deny, DNSNameIsAddress, "DNS SAN %q reads as an IPv4 address: resolvers (inet_aton) and URL parsers take it for one without asking DNS", name)
		}
	}
	return passed("%d DNS and %d IP SANs", len(csr.DNSNames), len(csr.IPAddresses))
}

// onlyDNSAndIP returns an error unless the subjectAltName value der holds only dNSName and
// iPAddress general names.
func onlyDNSAndIP(der []byte) error {
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &names); err != nil || len(rest) > 0 {
		return errors.New("subjectAltName extension does not decode as a list of general names")
	}
	types := []string{"otherName", "rfc822Name", "dNSName", "x400Address", "directoryName", "ediPartyName", "uniformResourceIdentifier", "iPAddress", "registeredID"}
	for _, n := range names {
		if n.Class == asn1.ClassContextSpecific && !n.IsCompound && (n.Tag == 2 || n.Tag == 7) {
			continue
		}
		if n.Class == asn1.ClassContextSpecific && n.Tag < len(types) {
			return fmt.Errorf("SAN of type %s is not allowed", types[n.Tag])
		}
		return fmt.Errorf("SAN with class %d tag %d is not allowed", n.Class, n.Tag)
	}
	return nil
}

// readsAsIPv4 reports whether name is an IPv4 address to inet_aton and the WHATWG URL standard:
// one to four labels, each a number (decimal digits, which octal "010" is too, or 0x and hex
// digits). "10.0.0.1", "010.0.0.010", "10.1", "167772161" and "0x0a000001" all are. Values
// out of range make it no address to them; it is denied all the same.
func readsAsIPv4(name string) bool {
	labels := strings.Split(lowerASCII(name), ".")
	if len(labels) > 4 {
		return false
	}
	for _, label := range labels {
		digits, isHex := strings.CutPrefix(label, "0x")
		if label == "" {
			return false
		}
		for _, r := range digits {
			if !('0' <= r && r <= '9' || isHex && 'a' <= r && r <= 'f') {
				return false
			}
		}
	}
	return true
}

// invalidDNSName says why name is not a DNS name a serving certificate may hold, or returns "".
// Case does not matter: names are compared lowercased.
func invalidDNSName(name string) string {
	switch {
	case strings.Contains(name, "*"):
		return "wildcards are not allowed"
	case strings.HasSuffix(name, "."):
		return "trailing dot"
	}
	lower := lowerASCII(name)
	if len(validation.IsDNS1123Subdomain(lower)) > 0 {
		return "not an RFC 1123 subdomain"
	}
	for label := range strings.SplitSeq(lower, ".") {
		if len(validation.IsDNS1123Label(label)) > 0 {
			return fmt.Sprintf("label %q is not an RFC 1123 label", label)
		}
	}
	return ""
}

func (e *evaluation) usages(context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	seen := map[certificatesv1.KeyUsage]bool{}
	for _, u := range e.req.Usages {
		if seen[u] {
			return failed(Deny, UsagesInvalid, "usage %q is listed twice", u)
		}
		seen[u] = true
	}
	serving := seen[certificatesv1.UsageDigitalSignature] && seen[certificatesv1.UsageServerAuth]
	encipherment := seen[certificatesv1.UsageKeyEncipherment]
	switch {
	case serving && len(seen) == 2:
	case serving && len(seen) == 3 && encipherment:
		// Kubelets before v1.27 ask for key encipherment with every key type, ECDSA included,
		// and the in-tree signer issues it: denying it would strand those kubelets.
	default:
		return failed(Deny, UsagesInvalid, "usages %q are not [digital signature, server auth] or [key encipherment, digital signature, server auth]", e.req.Usages)
	}
	return passed("usages %q", e.req.Usages)
}

func (e *evaluation) key(context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	switch k := e.csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return failed(Deny, KeyNotAllowed, "ECDSA curve %s is not allowed; use P-256 or P-384", k.Curve.Params().Name)
		}
		return passed("ECDSA %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 8192 {
			return failed(Deny, KeyNotAllowed, "RSA key of %d bits is not allowed; use 2048 to 8192 bits", bits)
		}
		return passed("RSA %d bits", k.N.BitLen())
	case ed25519.PublicKey:
		return passed("Ed25519")
	default:
		return failed(Deny, KeyNotAllowed, "key algorithm %v is not allowed", e.csr.PublicKeyAlgorithm)
	}
}

func (e *evaluation) expiration(context.Context) (CheckResult, error) {
	exp := e.req.ExpirationSeconds
	if exp == nil {
		return passed("no expirationSeconds: the signer's default applies")
	}
	if d := time.Duration(*exp) * time.Second; d > e.cfg.MaxExpiration {
		return failed(Deny, ExpirationTooLong, "expirationSeconds %d (%v) is above the maximum of %v", *exp, d, e.cfg.MaxExpiration)
	}
	return passed("expirationSeconds %d", *exp)
}
