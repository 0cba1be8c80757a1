// Package servingcsr parses and classifies kubernetes.io/kubelet-serving CertificateSigningRequests.
//
// It owns the reading of a CSR: whether it is in scope, its state (StateOf), when it was
// approved (ApprovedAt) and whether by csrguard (ApprovedByOther), whether it is final, who asked
// for it and what its PEM request says. It does not decide anything (that is package policy),
// talks to no API server and does no logging.
package servingcsr

import (
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// SignerName is the only signer csrguard handles.
const SignerName = certificatesv1.KubeletServingSignerName

// nodeUserPrefix is how the Node authorizer names a kubelet's identity.
const nodeUserPrefix = "system:node:"

// Request is a CSR reduced to what the policy decides on: a copy of its spec fields and its
// creation time.
type Request struct {
	Name              string
	SignerName        string
	Username          string
	Groups            []string
	Usages            []certificatesv1.KeyUsage
	ExpirationSeconds *int32
	PEM               []byte
	// Created is metadata.creationTimestamp.
	Created time.Time
	// SignatureChecked is true when the API server verified the signature of PEM: FromAPI
	// sets it, and the policy then parses the request without verifying it again.
	SignatureChecked bool
}

// FromCSR copies the fields the policy needs out of csr, so that the Request shares no memory
// with a cached object.
func FromCSR(csr *certificatesv1.CertificateSigningRequest) Request {
	var exp *int32
	if csr.Spec.ExpirationSeconds != nil {
		v := *csr.Spec.ExpirationSeconds
		exp = &v
	}
	return Request{
		Name:              csr.Name,
		SignerName:        csr.Spec.SignerName,
		Username:          csr.Spec.Username,
		Groups:            slices.Clone(csr.Spec.Groups),
		Usages:            slices.Clone(csr.Spec.Usages),
		ExpirationSeconds: exp,
		PEM:               slices.Clone(csr.Spec.Request),
		Created:           csr.CreationTimestamp.Time,
	}
}

// FromAPI is FromCSR for a CSR read from the API server, which verified the signature of its
// request: every Kubernetes version's validation (validateCSR in pkg/apis/certificates/validation)
// parses spec.request and calls CheckSignature on every create and update, and no update changes
// spec (the registry's strategies copy the stored spec over the new one). The request is then
// parsed and checked as any other, but its signature is not verified a second time: in a
// 10,000-CSR burst that ECDSA verification was half the policy's CPU time, a tenth of
// csrguard's. The in-tree signer verifies it again before it signs. A CSR from anywhere else —
// a file, a test — goes through FromCSR, whose Request has its signature verified.
func FromAPI(csr *certificatesv1.CertificateSigningRequest) Request {
	r := FromCSR(csr)
	r.SignatureChecked = true
	return r
}

// InScope reports whether csr asks for the kubelet-serving signer.
func InScope(csr *certificatesv1.CertificateSigningRequest) bool {
	return csr.Spec.SignerName == SignerName
}

// IsFinal reports whether csr carries an Approved, Denied or Failed condition or already holds a
// certificate. A final CSR must not be touched again.
func IsFinal(csr *certificatesv1.CertificateSigningRequest) bool {
	return StateOf(csr) != Pending
}

// State is where a CSR is in its life: waiting for a decision, decided, or signed.
type State string

// The states, in the order StateOf checks them.
const (
	// Denied: a Denied condition. Final.
	Denied State = "Denied"
	// Failed: a Failed condition, set by the signer that could not sign. Final.
	Failed State = "Failed"
	// Issued: a certificate is set. Final.
	Issued State = "Issued"
	// Approved: an Approved condition and no certificate yet: the signer's turn. Final for an
	// approver.
	Approved State = "Approved"
	// Pending: none of the above; waiting for an approver.
	Pending State = "Pending"
)

// StateOf returns the state of csr: Denied, Failed, Issued (a certificate is set), Approved or
// Pending, checked in that order.
func StateOf(csr *certificatesv1.CertificateSigningRequest) State {
	// Like the Kubernetes helpers, a condition counts by its type alone: the API server only
	// accepts status True for these types.
	has := func(t certificatesv1.RequestConditionType) bool {
		return slices.ContainsFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool {
			return c.Type == t
		})
	}
	switch {
	case has(certificatesv1.CertificateDenied):
		return Denied
	case has(certificatesv1.CertificateFailed):
		return Failed
	case len(csr.Status.Certificate) > 0:
		return Issued
	case has(certificatesv1.CertificateApproved):
		return Approved
	default:
		return Pending
	}
}

// IssueGrace is how long after its approval a CSR may stay Approved before the signer counts as
// not issuing: kube-controller-manager's signer issues within seconds.
const IssueGrace = time.Minute

// ApprovedAt returns when csr was approved: its Approved condition's LastUpdateTime, else that
// condition's LastTransitionTime, else csr's creation, the earliest it can have been approved
// (the API server fills both times in; a client may have written neither before it did). It
// returns the zero time when csr has no Approved condition.
func ApprovedAt(csr *certificatesv1.CertificateSigningRequest) time.Time {
	c, ok := approvedCondition(csr)
	if !ok {
		return time.Time{}
	}
	switch {
	case !c.LastUpdateTime.IsZero():
		return c.LastUpdateTime.Time
	case !c.LastTransitionTime.IsZero():
		return c.LastTransitionTime.Time
	}
	return csr.CreationTimestamp.Time
}

// ApprovedByOther reports whether csr is Approved or Issued on an approval that is not
// csrguard's (its Approved condition's reason is not ApprovedReason): another approver, or a
// human, decided it. A dry-run csrguard beside the approver it is to replace still judges these,
// so that it can report what it would have denied that the other let through.
func ApprovedByOther(csr *certificatesv1.CertificateSigningRequest) bool {
	if st := StateOf(csr); st != Approved && st != Issued {
		return false
	}
	c, ok := approvedCondition(csr)
	return ok && c.Reason != ApprovedReason
}

// approvedCondition returns csr's Approved condition, if it has one.
func approvedCondition(csr *certificatesv1.CertificateSigningRequest) (certificatesv1.CertificateSigningRequestCondition, bool) {
	i := slices.IndexFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool {
		return c.Type == certificatesv1.CertificateApproved
	})
	if i < 0 {
		return certificatesv1.CertificateSigningRequestCondition{}, false
	}
	return csr.Status.Conditions[i], true
}

// NodeName returns the node name from a "system:node:<name>" username. It reports false unless
// the name is a valid Node name (a lowercase RFC 1123 subdomain).
func NodeName(username string) (string, bool) {
	name, ok := strings.CutPrefix(username, nodeUserPrefix)
	if !ok || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", false
	}
	return name, true
}

// What csrguard writes on the CSRs it decides: the reason of the Approved
// condition, and the reasons of the Events it records on a CSR and its Node.
// doctor and preflight recognise csrguard's decisions by them, so they are
// part of csrguard's contract with the cluster and never change.
const (
	ApprovedReason    = "CSRGuardApproved"
	EventDenied       = "Denied"
	EventHeld         = "Held"
	EventWouldDeny    = "WouldDeny"
	EventWouldApprove = "WouldApprove"
)

// The approvers of kubelet-serving CSRs csrguard recognises, by the names
// their projects use: check-config finds them in manifests, doctor and
// preflight in the cluster.
const (
	ApproverCSRGuard    = "csrguard"
	ApproverAlex1989hu  = "kubelet-serving-cert-approver"
	ApproverPostfinance = "kubelet-csr-approver"
	ApproverTalosCCM    = "talos-cloud-controller-manager"
)
