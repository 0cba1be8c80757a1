package storm

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Kind says what a CSR of the storm is, and so how it must end.
type Kind int

// The kinds.
const (
	// Legitimate is a kubelet's CSR for exactly its own Node's addresses: it
	// must end Approved and issued.
	Legitimate Kind = iota + 1
	// Hostile is a CSR no policy may approve: it must end Denied.
	Hostile
)

func (k Kind) String() string {
	switch k {
	case Legitimate:
		return "legitimate"
	case Hostile:
		return "hostile"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Verdict is what Check found, in counts and in the invariants broken.
type Verdict struct {
	// Legitimate and Hostile are how many CSRs of each kind were filed.
	Legitimate, Hostile int
	// Approved and Issued count legitimate CSRs approved, and issued.
	Approved, Issued int
	// Denied and HostileApproved count hostile CSRs denied, and approved.
	Denied, HostileApproved int
	// Conflicting counts CSRs with both Approved and Denied conditions, or a
	// condition type twice: two deciders that disagreed, or decided twice.
	Conflicting int
	// Missing counts filed CSRs the API server does not have.
	Missing int
	// Violations describe every broken invariant, one per CSR, sorted.
	Violations []string
}

// Err is nil when every invariant holds, else an error listing the first
// violations.
func (v Verdict) Err() error {
	if len(v.Violations) == 0 {
		return nil
	}
	const show = 20
	lines := v.Violations[:min(len(v.Violations), show)]
	more := ""
	if len(v.Violations) > show {
		more = fmt.Sprintf("\n  … and %d more", len(v.Violations)-show)
	}
	return errors.New(fmt.Sprintf("%d invariant violations:\n  ", len(v.Violations)) + strings.Join(lines, "\n  ") + more)
}

// Check applies the invariants of a storm to the API server's CSRs: every CSR
// in want is present; a legitimate one is Approved and issued, and neither
// Denied nor Failed; a hostile one is Denied and not Approved; and no CSR has
// both an Approved and a Denied condition, or any condition type twice. CSRs
// not in want are ignored.
func Check(want map[string]Kind, csrs []certificatesv1.CertificateSigningRequest) Verdict {
	var v Verdict
	byName := make(map[string]*certificatesv1.CertificateSigningRequest, len(csrs))
	for i := range csrs {
		byName[csrs[i].Name] = &csrs[i]
	}
	for name, kind := range want {
		switch kind {
		case Legitimate:
			v.Legitimate++
		case Hostile:
			v.Hostile++
		}
		csr, ok := byName[name]
		if !ok {
			v.Missing++
			v.Violations = append(v.Violations, fmt.Sprintf("%s CSR %s: not found", kind, name))
			continue
		}
		if problem := v.check(kind, csr); problem != "" {
			v.Violations = append(v.Violations, fmt.Sprintf("%s CSR %s: %s", kind, name, problem))
		}
	}
	slices.Sort(v.Violations)
	return v
}

// check counts csr and returns what is wrong with it, or "".
func (v *Verdict) check(kind Kind, csr *certificatesv1.CertificateSigningRequest) string {
	seen := map[certificatesv1.RequestConditionType]int{}
	var denial string
	for _, c := range csr.Status.Conditions {
		seen[c.Type]++
		if c.Type == certificatesv1.CertificateDenied {
			denial = c.Reason
		}
	}
	approved, denied, failed := seen[certificatesv1.CertificateApproved] > 0, seen[certificatesv1.CertificateDenied] > 0, seen[certificatesv1.CertificateFailed] > 0
	issued := len(csr.Status.Certificate) > 0
	if approved && denied {
		v.Conflicting++
		return fmt.Sprintf("both Approved and Denied (%s)", denial)
	}
	for _, t := range []certificatesv1.RequestConditionType{certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed} {
		if seen[t] > 1 {
			v.Conflicting++
			return fmt.Sprintf("%d %s conditions", seen[t], t)
		}
	}
	if kind == Hostile {
		switch {
		case approved:
			v.HostileApproved++
			return "approved"
		case denied:
			v.Denied++
			return ""
		}
		return "not denied (still pending)"
	}
	if approved {
		v.Approved++
	}
	if issued {
		v.Issued++
	}
	switch {
	case denied:
		return "denied (" + denial + ")"
	case failed:
		return "failed (the signer could not sign)"
	case !approved:
		return "not approved (still pending)"
	case !issued:
		return "approved but not issued"
	}
	return ""
}
