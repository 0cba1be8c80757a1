package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}

	metadataAddresses = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}
	broadcast         = netip.MustParseAddr("255.255.255.255")
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
	csr, err := servingcsr.Parse(e.req.PEM)
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
	return passed("one PEM certificate request with a valid signature")
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

// invalidDNSName says why name is not a DNS name a serving certificate may hold, or returns "".
// Case does not matter: names are compared lowercased.
func invalidDNSName(name string) string {
	switch {
	case strings.Contains(name, "*"):
		return "wildcards are not allowed"
	case strings.HasSuffix(name, "."):
		return "trailing dot"
	}
	lower := strings.ToLower(name)
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
	isRSA := e.csr.PublicKeyAlgorithm == x509.RSA
	serving := seen[certificatesv1.UsageDigitalSignature] && seen[certificatesv1.UsageServerAuth]
	encipherment := seen[certificatesv1.UsageKeyEncipherment]
	switch {
	case serving && len(seen) == 2:
	case serving && len(seen) == 3 && encipherment && isRSA:
	case serving && len(seen) == 3 && encipherment:
		// Key encipherment means RSA key transport; no other key type can do it.
		return failed(Deny, UsagesInvalid, "usage %q is only allowed for RSA keys", certificatesv1.UsageKeyEncipherment)
	default:
		return failed(Deny, UsagesInvalid, "usages %q are not [digital signature, server auth] (or, for RSA keys, [key encipherment, digital signature, server auth])", e.req.Usages)
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

func (e *evaluation) reserved(ctx context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	cluster, err := e.facts.Cluster(ctx)
	if err != nil {
		return CheckResult{}, fmt.Errorf("get cluster addresses: %w", err)
	}
	// Kubelet-serving certificates are often signed by the cluster CA that every pod trusts: one
	// for a cluster name or address would let a node impersonate the API server or a Service.
	for _, name := range e.dnsNames {
		if e.reservedName(name) {
			return failed(Deny, ReservedName, "DNS SAN %q is a reserved name", name)
		}
		// A DNS SAN spelled as an IP may be matched against an IP by some clients.
		if addr, err := netip.ParseAddr(name); err == nil {
			if why := e.reservedAddress(addr.Unmap(), cluster); why != "" {
				return failed(Deny, ReservedAddress, "DNS SAN %q is %s", name, why)
			}
		}
	}
	for _, ip := range e.ips {
		why := e.reservedAddress(ip, cluster)
		if why == apiServerAddress {
			// On kubeadm and Talos the API server listens on each control-plane
			// node's own IP, so that node's kubelet asks for it too. Only a
			// Node with a control-plane role label (which a node cannot set on
			// itself) may have it; san-ownership then checks it is that node's.
			node, err := e.requestingNode(ctx)
			if err != nil {
				return CheckResult{}, err
			}
			switch {
			case node == nil && e.nodeName != "":
				return failed(Hold, NodeNotFound, "IP SAN %s is %s; only its control-plane node may hold it, and node %q does not exist (yet)", ip, why, e.nodeName)
			case node != nil && node.ControlPlane:
				continue
			}
			// Installers label a control-plane Node just after its kubelet
			// registers, so hold for the settle time before denying.
			return e.unsettled(ReservedAddress, "IP SAN %s is %s and node %q is not a control-plane node", ip, why, e.nodeName)
		}
		if why != "" {
			return failed(Deny, ReservedAddress, "IP SAN %s is %s", ip, why)
		}
	}
	return passed("no reserved name or address")
}

// reservedName reports whether the normalised DNS name belongs to the cluster or to the local
// host, so that no node may hold a certificate for it.
func (e *evaluation) reservedName(name string) bool {
	domain := e.cfg.ClusterDomain
	switch name {
	case "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + domain, domain, "localhost":
		return true
	}
	// ".svc."+domain is within "."+domain.
	for _, suffix := range []string{".svc", "." + domain, ".localhost"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return slices.ContainsFunc(e.cfg.ExtraReservedNames, func(r string) bool { return normaliseDNS(r) == name })
}

// apiServerAddress is reservedAddress's answer for an API server endpoint.
const apiServerAddress = "an API server address"

// requestingNode looks up the requesting Node once; nil when it does not exist
// or the username names no valid node.
func (e *evaluation) requestingNode(ctx context.Context) (*Node, error) {
	if e.nodeName == "" {
		return nil, nil
	}
	if e.node == nil {
		node, err := e.facts.Node(ctx, e.nodeName)
		if err != nil {
			return nil, fmt.Errorf("get node %q: %w", e.nodeName, err)
		}
		e.node = node
	}
	return e.node, nil
}

// reservedAddress says why the unmapped addr may not be a node's serving address, or returns "".
func (e *evaluation) reservedAddress(addr netip.Addr, cluster Cluster) string {
	inAny := func(prefixes []netip.Prefix) bool {
		return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return normalisePrefix(p).Contains(addr) })
	}
	switch {
	case addr.IsLoopback() && !e.cfg.InsecureAllowLoopback:
		return "a loopback address"
	case slices.Contains(metadataAddresses, addr):
		return "a cloud metadata address"
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return "a link-local address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr == broadcast:
		return "the broadcast address"
	case slices.ContainsFunc(cluster.APIServerAddresses, func(a netip.Addr) bool { return normaliseAddr(a) == addr }):
		return apiServerAddress
	case inAny(cluster.ServiceCIDRs):
		return "a Service IP"
	case inAny(e.cfg.ExtraReservedCIDRs):
		return "in a reserved CIDR"
	}
	return ""
}

func (e *evaluation) allowedCIDRs(context.Context) (CheckResult, error) {
	if len(e.cfg.AllowedNodeCIDRs) == 0 {
		return skipped("skipped: no allowed node CIDRs configured")
	}
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	for _, ip := range e.ips {
		if !slices.ContainsFunc(e.cfg.AllowedNodeCIDRs, func(p netip.Prefix) bool { return normalisePrefix(p).Contains(ip) }) {
			return failed(Deny, AddressNotAllowed, "IP SAN %s is outside the allowed node CIDRs", ip)
		}
	}
	return passed("every IP SAN is inside the allowed node CIDRs")
}

func (e *evaluation) dnsRegex(context.Context) (CheckResult, error) {
	re := e.cfg.DNSNameRegex
	if re == nil {
		return skipped("skipped: no DNS name pattern configured")
	}
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	for _, name := range e.dnsNames {
		// Require a full match even if the pattern is not anchored.
		if loc := re.FindStringIndex(name); loc == nil || loc[0] != 0 || loc[1] != len(name) {
			return failed(Deny, DNSNameNotAllowed, "DNS SAN %q does not match the allowed DNS name pattern", name)
		}
	}
	return passed("every DNS SAN matches the allowed DNS name pattern")
}

func (e *evaluation) nodeExists(ctx context.Context) (CheckResult, error) {
	if e.nodeName == "" {
		return skipped(skipNoNode)
	}
	node, err := e.requestingNode(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	if node == nil {
		// The kubelet may ask before its Node is visible here: wait for it rather than deny.
		return failed(Hold, NodeNotFound, "node %q does not exist (yet)", e.nodeName)
	}
	return passed("node %q exists", e.nodeName)
}

func (e *evaluation) sanOwnership(ctx context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	if e.node == nil {
		return skipped("skipped: the node was not found")
	}
	ownNames := map[string]bool{}
	ownIPs := map[netip.Addr]bool{}
	for _, a := range e.node.Addresses {
		// The kubelet's template (pkg/kubelet/certificate) turns a Hostname
		// that is an IP into an IP SAN, so such a Hostname owns an IP too.
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			ownNames[normaliseDNS(a.Address)] = true
			if addr, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeHostName {
				ownIPs[normaliseAddr(addr)] = true
			}
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if addr, err := netip.ParseAddr(a.Address); err == nil {
				ownIPs[normaliseAddr(addr)] = true
			}
		}
	}
	var keys []string // lookup keys for NodesWithAddress, one per SAN
	for _, name := range e.dnsNames {
		if !ownNames[name] {
			return e.unsettled(SANNotOnNode, "DNS SAN %q is not an address of node %q", name, e.nodeName)
		}
		keys = append(keys, name)
	}
	for _, ip := range e.ips {
		if !ownIPs[ip] {
			return e.unsettled(SANNotOnNode, "IP SAN %s is not an address of node %q", ip, e.nodeName)
		}
		keys = append(keys, ip.String())
	}
	slices.Sort(keys)
	for _, key := range slices.Compact(keys) {
		names, err := e.facts.NodesWithAddress(ctx, key)
		if err != nil {
			return CheckResult{}, fmt.Errorf("find nodes with address %q: %w", key, err)
		}
		for _, other := range slices.Sorted(slices.Values(names)) {
			if other != e.nodeName {
				return e.unsettled(SANOfOtherNode, "SAN %q is also an address of node %q", key, other)
			}
		}
	}
	return passed("every SAN is an address of node %q and of no other node", e.nodeName)
}

// unsettled fails an ownership check: Hold while the request is younger than the settle time,
// since the address caches may not yet show a Node's new addresses, and Deny after that.
func (e *evaluation) unsettled(reason Reason, format string, args ...any) (CheckResult, error) {
	msg := fmt.Sprintf(format, args...)
	if age := e.now.Sub(e.req.Created); age < e.cfg.AddressSettleTime {
		return failed(Hold, reason, "%s; holding until the request is %v old in case node addresses lag", msg, e.cfg.AddressSettleTime)
	}
	return failed(Deny, reason, "%s", msg)
}

// normaliseDNS returns name as it is compared: lowercased, without a trailing dot.
func normaliseDNS(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// normaliseAddr returns addr as it is compared: IPv4-mapped IPv6 as IPv4, without a zone.
func normaliseAddr(addr netip.Addr) netip.Addr {
	return addr.Unmap().WithZone("")
}

// normalisePrefix returns an IPv4-mapped IPv6 prefix as the IPv4 prefix it covers.
func normalisePrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}
