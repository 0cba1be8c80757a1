package servingcsr

import (
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// SupersededReason is the reason of the Denied condition csrguard writes on a pending CSR whose
// node already has a newer approved or issued one (see Supersede), and the reason code of the
// decision. It is part of csrguard's contract with the cluster, like the constants below, and
// never changes.
const SupersededReason = "Superseded"

// Newer reports whether a was created after b: by creationTimestamp, and within the same second
// (the API server's resolution) by name.
func Newer(a, b *certificatesv1.CertificateSigningRequest) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

// Supersession says why a pending CSR is not its node's live one.
type Supersession struct {
	// By names the newest CSR that supersedes it: with Final, the newest newer CSR of the same
	// node that is approved or issued; else the newest newer one that is pending.
	By string
	// Final is true when a newer CSR of the same node is approved or issued: the node has, or is
	// being given, a newer certificate, so this CSR can never be what its kubelet waits for, and
	// nothing that happens later can make it live again. Without Final a newer CSR is pending:
	// this one is live again should every newer one be denied, fail or be deleted.
	Final bool
}

// Supersede returns the supersession of every pending kubelet-serving CSR in csrs that is not
// its node's live one, by CSR name. A kubelet files a new CSR each time it gives up waiting (about
// every 15 minutes) and waits only for its newest, so of a node's pending CSRs only one is live:
// the newest of those not older than a newer pending, approved or issued CSR of the node — the
// newest pending one, unless a newer one was approved. A denied or failed CSR supersedes
// nothing: the kubelet files another, and a denial of a CSR the kubelet did not file must not
// strand the one it did.
//
// The node is the one spec.username names (system:node:<name>), which the API server sets from
// the requester's credentials, and only with spec.groups holding system:nodes, as the node
// authorizer requires: CSRs of other requesters are never superseded and supersede nothing, so
// one requester's CSRs never decide the fate of another's, even one that another authenticator
// names system:node:<name>. CSRs of other signers are ignored.
func Supersede(csrs []certificatesv1.CertificateSigningRequest) map[string]Supersession {
	byNode := map[string][]*certificatesv1.CertificateSigningRequest{}
	for i := range csrs {
		csr := &csrs[i]
		if !InScope(csr) {
			continue
		}
		if node, ok := nodeOf(csr); ok {
			byNode[node] = append(byNode[node], csr)
		}
	}
	out := map[string]Supersession{}
	for _, mine := range byNode {
		// Newest first; then every pending CSR is superseded by what was seen before it.
		slices.SortFunc(mine, func(a, b *certificatesv1.CertificateSigningRequest) int {
			switch {
			case Newer(a, b):
				return -1
			case Newer(b, a):
				return 1
			}
			return 0
		})
		var pending, final string // newest pending, approved or issued CSR seen so far
		for _, csr := range mine {
			switch StateOf(csr) {
			case Pending:
				switch {
				case final != "":
					out[csr.Name] = Supersession{By: final, Final: true}
				case pending != "":
					out[csr.Name] = Supersession{By: pending}
				default:
					pending = csr.Name
				}
			case Approved, Issued:
				if final == "" {
					final = csr.Name
				}
			case Denied, Failed:
				// Supersedes nothing (see above).
			}
		}
	}
	return out
}

// nodeOf returns the node whose kubelet filed csr: spec.username's, when spec.groups holds
// system:nodes (see Supersede).
func nodeOf(csr *certificatesv1.CertificateSigningRequest) (string, bool) {
	node, ok := NodeName(csr.Spec.Username)
	return node, ok && slices.Contains(csr.Spec.Groups, nodesGroup)
}

// nodesGroup is the group of every kubelet's identity.
const nodesGroup = "system:nodes"

// SupersededBy is Supersede for the one pending CSR csr, in one pass over csrs (which may hold
// any CSRs, csr among them): the controller asks it for each CSR it decides, so that a node with
// thousands of CSRs costs linear time per decision, not a sort. It reports false when csr is
// live, or not a pending kubelet-serving CSR of a node.
func SupersededBy(csr *certificatesv1.CertificateSigningRequest, csrs []certificatesv1.CertificateSigningRequest) (Supersession, bool) {
	node, ok := nodeOf(csr)
	if !ok || !InScope(csr) || StateOf(csr) != Pending {
		return Supersession{}, false
	}
	var pending, final *certificatesv1.CertificateSigningRequest // the newest newer ones
	for i := range csrs {
		c := &csrs[i]
		if c.Name == csr.Name || !InScope(c) || !Newer(c, csr) {
			continue
		}
		if n, ok := nodeOf(c); !ok || n != node {
			continue
		}
		switch StateOf(c) {
		case Pending:
			if pending == nil || Newer(c, pending) {
				pending = c
			}
		case Approved, Issued:
			if final == nil || Newer(c, final) {
				final = c
			}
		case Denied, Failed:
			// Supersedes nothing (see Supersede).
		}
	}
	switch {
	case final != nil:
		return Supersession{By: final.Name, Final: true}, true
	case pending != nil:
		return Supersession{By: pending.Name}, true
	}
	return Supersession{}, false
}

// Revisit returns the names of the pending CSRs in csrs whose supersession may have changed now
// that changed, a CSR of their node, was decided or deleted while pending. If changed is approved
// or issued, that is every pending CSR of its node older than it: they are now finally
// superseded. Otherwise (denied, failed, or deleted pending) changed superseded nothing any more,
// and only the newest older pending CSR can have become live: every other older one is still
// superseded by that one, and is revisited when that one is decided in turn. So a node that files
// n CSRs costs n revisits while they are decided one by one, not n²/2.
func Revisit(changed *certificatesv1.CertificateSigningRequest, csrs []certificatesv1.CertificateSigningRequest) []string {
	node, ok := nodeOf(changed)
	if !ok || !InScope(changed) {
		return nil
	}
	all := false
	if st := StateOf(changed); st == Approved || st == Issued {
		all = true
	}
	var out []string
	var newest *certificatesv1.CertificateSigningRequest
	for i := range csrs {
		c := &csrs[i]
		if c.Name == changed.Name || !InScope(c) || StateOf(c) != Pending || !Newer(changed, c) {
			continue
		}
		if n, ok := nodeOf(c); !ok || n != node {
			continue
		}
		switch {
		case all:
			out = append(out, c.Name)
		case newest == nil || Newer(c, newest):
			newest = c
		}
	}
	if newest != nil {
		out = append(out, newest.Name)
	}
	return out
}

// SupersedeApprovable is Supersede as a reader that denies nothing sees it (`csrguard approve`,
// doctor): a pending CSR for which approvable reports false (the policy would deny or hold it)
// supersedes nothing and is not itself reported, for the controller denies or holds it on its
// own merits and an older CSR is then live again. So a node's newer hostile CSR never hides the
// one its kubelet waits for.
func SupersedeApprovable(csrs []certificatesv1.CertificateSigningRequest, approvable func(*certificatesv1.CertificateSigningRequest) bool) map[string]Supersession {
	kept := make([]certificatesv1.CertificateSigningRequest, 0, len(csrs))
	for i := range csrs {
		if StateOf(&csrs[i]) != Pending || approvable(&csrs[i]) {
			kept = append(kept, csrs[i])
		}
	}
	return Supersede(kept)
}
