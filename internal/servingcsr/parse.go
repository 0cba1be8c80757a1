package servingcsr

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"unicode"
)

// The reasons a ParseError carries. They double as the policy's reason codes.
const (
	// MalformedRequest means the PEM or DER of the request is not exactly one well-formed
	// certificate request.
	MalformedRequest = "MalformedRequest"
	// InvalidSignature means the request is well formed but not signed by its own key.
	InvalidSignature = "InvalidSignature"
)

// pemType is the only PEM block type a kubelet writes into spec.request.
const pemType = "CERTIFICATE REQUEST"

// MaxRequestBytes bounds spec.request. A kubelet's is under 1 KiB (an 8192-bit RSA key with 20
// SANs stays under 4 KiB); the API server sets no limit, so a node could otherwise file
// megabyte requests that csrguard's cache would hold for the hour until they are deleted.
const MaxRequestBytes = 16 << 10

// ParseError is the error Parse returns.
type ParseError struct {
	// Reason is MalformedRequest or InvalidSignature.
	Reason string
	// Msg says what is wrong; it never contains request data.
	Msg string
}

// Error returns the message.
func (e *ParseError) Error() string { return e.Msg }

// Parse decodes, from at most MaxRequestBytes, exactly one PEM "CERTIFICATE REQUEST" block with no headers and nothing but
// whitespace around it, parses it with x509.ParseCertificateRequest, and verifies its signature.
// Errors are of type *ParseError.
func Parse(pemBytes []byte) (*x509.CertificateRequest, error) {
	csr, err := ParseUnverified(pemBytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &ParseError{Reason: InvalidSignature, Msg: fmt.Sprintf("check request signature: %v", err)}
	}
	return csr, nil
}

// ParseUnverified is Parse without the signature verification, for a request whose signature the
// API server verified (see FromAPI). The block it parses is the one the API server verified: the
// first CERTIFICATE REQUEST block, as ParseUnverified accepts a request only if that is its one
// block.
func ParseUnverified(pemBytes []byte) (*x509.CertificateRequest, error) {
	malformed := func(format string, args ...any) error {
		return &ParseError{Reason: MalformedRequest, Msg: fmt.Sprintf(format, args...)}
	}
	if len(pemBytes) > MaxRequestBytes {
		return nil, malformed("request is over %d bytes", MaxRequestBytes)
	}
	// pem.Decode skips text before a block and even past a broken block to the next one, so
	// insist on a single BEGIN line at the very start: what we check is what the signer signs.
	trimmed := bytes.TrimLeftFunc(pemBytes, unicode.IsSpace)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, malformed("request does not start with a PEM block")
	}
	if n := bytes.Count(trimmed, []byte("-----BEGIN")); n != 1 {
		return nil, malformed("request holds %d PEM blocks, want exactly 1", n)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, malformed("request is not valid PEM")
	}
	if block.Type != pemType {
		return nil, malformed("PEM block type is %q, want %q", block.Type, pemType)
	}
	if len(block.Headers) > 0 {
		return nil, malformed("PEM block has headers")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, malformed("request has data after the PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, malformed("parse certificate request: %v", err)
	}
	return csr, nil
}
