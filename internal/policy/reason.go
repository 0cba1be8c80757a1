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
	// UsagesInvalid (Deny): spec.usages is not {digital signature, server auth}, or for RSA keys
	// also {key encipherment, digital signature, server auth}, without duplicates.
	UsagesInvalid Reason = "UsagesInvalid"
	// KeyNotAllowed (Deny): the key is not ECDSA P-256/P-384, RSA 2048-8192 bits or Ed25519.
	KeyNotAllowed Reason = "KeyNotAllowed"
	// ExpirationTooLong (Deny): spec.expirationSeconds exceeds Config.MaxExpiration.
	ExpirationTooLong Reason = "ExpirationTooLong"
	// ReservedName (Deny): a DNS SAN is a cluster-internal or otherwise reserved name.
	ReservedName Reason = "ReservedName"
	// ReservedAddress (Deny): an IP SAN, or a DNS SAN that is an IP literal, is loopback,
	// link-local, multicast, unspecified, broadcast, a metadata address, an API server address, a
	// Service IP or in Config.ExtraReservedCIDRs.
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
	// SANOfOtherNode (Hold, then Deny after Config.AddressSettleTime): another Node reports one
	// of the SANs as its address.
	SANOfOtherNode Reason = "SANOfOtherNode"
)
