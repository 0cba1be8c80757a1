package policy

import "github.com/csrguard/csrguard/internal/servingcsr"

// Reason is a stable, CamelCase code for why a decision was made. Reasons appear in Events,
// metrics and explain output, so they never change once released.
type Reason string

// The reasons. Each says which verdict it comes with.
const (
	// AllChecksPassed comes with Approve.
	AllChecksPassed Reason = "AllChecksPassed"

	// SignerNotKubeletServing (Deny): the CSR is for another signer.
	SignerNotKubeletServing Reason = "SignerNotKubeletServing"
	// RequesterNotNode (Deny): spec.username is not system:node:<valid node name>.
	RequesterNotNode Reason = "RequesterNotNode"
	// RequesterGroupsInvalid (Deny): spec.groups lacks system:nodes or system:authenticated.
	RequesterGroupsInvalid Reason = "RequesterGroupsInvalid"
	// MalformedRequest (Deny): spec.request is not exactly one well-formed PEM certificate request.
	MalformedRequest Reason = servingcsr.MalformedRequest
	// InvalidSignature (Deny): the request is not signed by its own key.
	InvalidSignature Reason = servingcsr.InvalidSignature
	// SubjectMismatch (Deny): the subject common name is not the username, or the subject holds
	// attributes other than one common name and the organization.
	SubjectMismatch Reason = "SubjectMismatch"
	// OrganizationInvalid (Deny): the subject organization is not exactly [system:nodes].
	OrganizationInvalid Reason = "OrganizationInvalid"
	// SANTypeForbidden (Deny): a SAN is not a DNS name or an IP address.
	SANTypeForbidden Reason = "SANTypeForbidden"
	// NoSANs (Deny): the request has neither DNS nor IP SANs.
	NoSANs Reason = "NoSANs"
	// TooManySANs (Deny): the request has more SANs than Config.MaxSANs.
	TooManySANs Reason = "TooManySANs"
	// ExtensionForbidden (Deny): the request asks for an extension other than subjectAltName.
	ExtensionForbidden Reason = "ExtensionForbidden"
	// DNSNameInvalid (Deny): a DNS SAN is not an RFC 1123 name (wildcard, trailing dot, empty or
	// long label, bad character).
	DNSNameInvalid Reason = "DNSNameInvalid"
	// DNSNameIsAddress (Deny): a DNS SAN reads as an IPv4 address to resolvers and URL parsers
	// (every label a number: 10.0.0.1, 010.0.0.1, 10.1, 0x0a000001). Kubelets put addresses
	// into IP SANs only.
	DNSNameIsAddress Reason = "DNSNameIsAddress"
	// UsagesInvalid (Deny): spec.usages is not {digital signature, server auth} or {key
	// encipherment, digital signature, server auth} (what kubelets before v1.27 send for every
	// key type), without duplicates.
	UsagesInvalid Reason = "UsagesInvalid"
	// KeyNotAllowed (Deny): the key is not ECDSA P-256/P-384, RSA 2048-8192 bits or Ed25519.
	KeyNotAllowed Reason = "KeyNotAllowed"
	// ExpirationTooLong (Deny): spec.expirationSeconds exceeds Config.MaxExpiration.
	ExpirationTooLong Reason = "ExpirationTooLong"
	// ReservedName (Deny; Hold first for API server names): a DNS SAN is a cluster-internal name
	// (kubernetes.default.svc, *.svc, *.pod, the cluster domain, <service>.<namespace> of an
	// existing namespace), localhost, a --reserved-names entry, or a name of the API server's
	// certificate that only its own control-plane node may hold.
	ReservedName Reason = "ReservedName"
	// ReservedAddress (Deny; Hold first for API server addresses): an IP SAN is loopback,
	// link-local, multicast, unspecified, broadcast, a metadata address, a Service IP, in
	// Config.ExtraReservedCIDRs, or an API server address (current or remembered) that only its
	// own control-plane node may hold.
	ReservedAddress Reason = "ReservedAddress"
	// AddressNotAllowed (Deny): an IP SAN is outside every Config.AllowedNodeCIDRs.
	AddressNotAllowed Reason = "AddressNotAllowed"
	// DNSNameNotAllowed (Deny): a DNS SAN does not match Config.DNSNameRegex.
	DNSNameNotAllowed Reason = "DNSNameNotAllowed"
	// NodeNotFound (Hold): the requesting Node does not exist (yet).
	NodeNotFound Reason = "NodeNotFound"
	// SANNotOnNode (Hold, then Deny after Config.AddressSettleTime): a SAN is not among the
	// requesting Node's status.addresses.
	SANNotOnNode Reason = "SANNotOnNode"
	// SANOfOtherNode (Hold, then Deny after Config.AddressSettleTime): a SAN belongs to another
	// Node: that Node owns the address (it reported it first), or reports it too and neither
	// owns it, or a DNS SAN is (or starts with) another Node's name. While the owner's claim
	// runs out after it stopped reporting the address, the request is held, never denied.
	SANOfOtherNode Reason = "SANOfOtherNode"
)
