package servingcsr_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// csrAt is a kubelet-serving CSR of user, in the groups of a node, created at second sec, in
// state (Pending, Approved, Issued, Denied or Failed).
func csrAt(name, user string, sec int, state servingcsr.State) certificatesv1.CertificateSigningRequest {
	csr := certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Date(2026, 11, 30, 12, 0, sec, 0, time.UTC))},
		Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: servingcsr.SignerName, Username: user,
			Groups: []string{"system:nodes", "system:authenticated"}},
	}
	cond := func(t certificatesv1.RequestConditionType) {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: t, Status: "True"})
	}
	switch state {
	case servingcsr.Approved:
		cond(certificatesv1.CertificateApproved)
	case servingcsr.Issued:
		cond(certificatesv1.CertificateApproved)
		csr.Status.Certificate = []byte("cert")
	case servingcsr.Denied:
		cond(certificatesv1.CertificateDenied)
	case servingcsr.Failed:
		cond(certificatesv1.CertificateApproved)
		cond(certificatesv1.CertificateFailed)
	}
	return csr
}

func TestSupersede(t *testing.T) {
	const a, b = "system:node:node-a", "system:node:node-b"
	pending, approved, issued, denied, failed := servingcsr.Pending, servingcsr.Approved, servingcsr.Issued, servingcsr.Denied, servingcsr.Failed
	tests := []struct {
		name string
		csrs []certificatesv1.CertificateSigningRequest
		want map[string]servingcsr.Supersession
	}{
		{
			name: "one_pending_is_live",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending)},
			want: map[string]servingcsr.Supersession{},
		},
		{
			name: "outage_backlog_newest_live",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c2", a, 2, pending), csrAt("c3", a, 3, pending), csrAt("c1", a, 1, pending)},
			want: map[string]servingcsr.Supersession{"c1": {By: "c3"}, "c2": {By: "c3"}},
		},
		{
			name: "newest_approved_makes_older_final",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), csrAt("c2", a, 2, pending), csrAt("c3", a, 3, approved)},
			want: map[string]servingcsr.Supersession{"c1": {By: "c3", Final: true}, "c2": {By: "c3", Final: true}},
		},
		{
			name: "newest_issued_makes_older_final",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), csrAt("c3", a, 3, issued)},
			want: map[string]servingcsr.Supersession{"c1": {By: "c3", Final: true}},
		},
		{
			// The pending CSR after the issued one is a rotation: live.
			name: "pending_newer_than_issued_is_live",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), csrAt("c2", a, 2, issued), csrAt("c3", a, 3, pending), csrAt("c4", a, 4, pending)},
			want: map[string]servingcsr.Supersession{"c1": {By: "c2", Final: true}, "c3": {By: "c4"}},
		},
		{
			// A denial of the newest (of a CSR the kubelet may not have filed) strands nothing.
			name: "denied_newer_supersedes_nothing",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), csrAt("c2", a, 2, pending), csrAt("c3", a, 3, denied)},
			want: map[string]servingcsr.Supersession{"c1": {By: "c2"}},
		},
		{
			name: "failed_newer_supersedes_nothing",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), csrAt("c3", a, 3, failed)},
			want: map[string]servingcsr.Supersession{},
		},
		{
			// An older approval does not make a newer pending CSR final.
			name: "older_approved_supersedes_nothing",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, approved), csrAt("c2", a, 2, pending)},
			want: map[string]servingcsr.Supersession{},
		},
		{
			name: "nodes_apart",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("a1", a, 1, pending), csrAt("b2", b, 2, pending), csrAt("b3", b, 3, approved), csrAt("a0", a, 0, pending)},
			want: map[string]servingcsr.Supersession{"a0": {By: "a1"}, "b2": {By: "b3", Final: true}},
		},
		{
			name: "same_second_by_name",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("csr-b", a, 1, pending), csrAt("csr-a", a, 1, pending), csrAt("csr-c", a, 0, pending)},
			want: map[string]servingcsr.Supersession{"csr-a": {By: "csr-b"}, "csr-c": {By: "csr-b"}},
		},
		{
			// A requester that is no node is grouped with nothing: each is decided (and denied) alone.
			name: "not_a_node_never_superseded",
			csrs: []certificatesv1.CertificateSigningRequest{csrAt("x1", "alice", 1, pending), csrAt("x2", "alice", 2, pending), csrAt("x3", "system:node:", 3, pending), csrAt("x4", "system:node:", 4, approved)},
			want: map[string]servingcsr.Supersession{},
		},
		{
			// Named system:node:node-a by another authenticator, not in system:nodes: its newer
			// CSRs do not hide the kubelet's, and the kubelet's newer ones do not hide its.
			name: "impostor_of_a_node_apart",
			csrs: func() []certificatesv1.CertificateSigningRequest {
				impostor := func(name string, sec int, st servingcsr.State) certificatesv1.CertificateSigningRequest {
					c := csrAt(name, a, sec, st)
					c.Spec.Groups = []string{"system:authenticated"}
					return c
				}
				return []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), impostor("i2", 2, pending), impostor("i3", 3, approved),
					impostor("i0", 0, pending), csrAt("c4", a, 4, pending)}
			}(),
			want: map[string]servingcsr.Supersession{"c1": {By: "c4"}},
		},
		{
			name: "other_signer_ignored",
			csrs: func() []certificatesv1.CertificateSigningRequest {
				other := csrAt("o2", a, 2, approved)
				other.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName
				return []certificatesv1.CertificateSigningRequest{csrAt("c1", a, 1, pending), other}
			}(),
			want: map[string]servingcsr.Supersession{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := servingcsr.Supersede(tt.csrs)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Supersede (-got +want):\n%s", diff)
			}
			// SupersededBy, one CSR at a time, is the same rule.
			one := map[string]servingcsr.Supersession{}
			for i := range tt.csrs {
				if s, ok := servingcsr.SupersededBy(&tt.csrs[i], tt.csrs); ok {
					one[tt.csrs[i].Name] = s
				}
			}
			if diff := cmp.Diff(one, tt.want); diff != "" {
				t.Errorf("SupersededBy (-got +want):\n%s", diff)
			}
		})
	}
}

func TestSupersedeApprovable(t *testing.T) {
	const a = "system:node:node-a"
	pending, approved := servingcsr.Pending, servingcsr.Approved
	// The kubelet waits for c2; c3 and c4 are a node's hostile CSRs the policy would not approve.
	csrs := []certificatesv1.CertificateSigningRequest{
		csrAt("c1", a, 1, pending), csrAt("c2", a, 2, pending), csrAt("c3", a, 3, pending), csrAt("c4", a, 4, pending),
		csrAt("c0", a, 0, pending), csrAt("b1", a, 0, approved),
	}
	hostile := map[string]bool{"c3": true, "c4": true}
	got := servingcsr.SupersedeApprovable(csrs, func(csr *certificatesv1.CertificateSigningRequest) bool { return !hostile[csr.Name] })
	want := map[string]servingcsr.Supersession{"c0": {By: "c2"}, "c1": {By: "c2"}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("SupersedeApprovable (-got +want):\n%s", diff)
	}
}

func TestRevisit(t *testing.T) {
	const a, b = "system:node:node-a", "system:node:node-b"
	pending := servingcsr.Pending
	csrs := []certificatesv1.CertificateSigningRequest{
		csrAt("c1", a, 1, pending), csrAt("c2", a, 2, pending), csrAt("c3", a, 3, servingcsr.Denied),
		csrAt("c4", a, 4, pending), csrAt("b1", b, 1, pending), csrAt("c9", a, 9, pending),
	}
	tests := []struct {
		name    string
		changed certificatesv1.CertificateSigningRequest
		want    []string
	}{
		// Only the newest older pending CSR can be live now; c1 is still superseded by c2.
		{"denied", csrAt("c5", a, 5, servingcsr.Denied), []string{"c4"}},
		{"failed", csrAt("c5", a, 5, servingcsr.Failed), []string{"c4"}},
		{"deleted_pending", csrAt("c5", a, 5, pending), []string{"c4"}},
		// Every older pending CSR is finally superseded; newer and other nodes' ones are not.
		{"approved", csrAt("c5", a, 5, servingcsr.Approved), []string{"c1", "c2", "c4"}},
		{"issued", csrAt("c5", a, 5, servingcsr.Issued), []string{"c1", "c2", "c4"}},
		{"oldest", csrAt("c0", a, 0, servingcsr.Denied), nil},
		{"not_a_node", csrAt("x", "alice", 5, servingcsr.Approved), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(servingcsr.Revisit(&tc.changed, csrs), tc.want); diff != "" {
				t.Errorf("Revisit() mismatch (-got +want):\n%s", diff)
			}
		})
	}
}
