package diagnose

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/internal/buildinfo"
	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// got is a finding reduced to what the table compares: "severity id".
func ids(findings []Finding) []string {
	out := []string{}
	for _, f := range findings {
		out = append(out, f.Severity.String()+" "+f.ID)
	}
	return out
}

// addPending adds a pending CSR with a decision.
func addPending(t *testing.T, s *Snapshot, name, node, ip string, age time.Duration, d policy.Decision) {
	t.Helper()
	s.CSRs = append(s.CSRs, newCSR(t, name, node, ip, age))
	s.Decisions[name] = d
	kube.SortCSRs(s.CSRs)
}

// setProbeCert makes node's probe see cert.
func setProbeCert(s *Snapshot, node, ip string, cert *x509.Certificate) {
	s.Probes[node] = probeOK(node, ip, cert)
}

func TestDiagnose(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T) Snapshot
		want  []string
		// evidence, if set, must each appear in some evidence line of the finding with that ID.
		evidence map[string][]string
	}{
		{
			name:  "healthy",
			build: func(t *testing.T) Snapshot { return healthy(t, ubuntuOS) },
			want:  []string{},
		},
		{
			name:  "healthy_no_rotation_no_approver",
			build: func(t *testing.T) Snapshot { s := healthy(t, ubuntuOS); s.Approvers, s.CSRs = nil, nil; return s },
			want:  []string{},
		},
		{
			name:  "incident",
			build: func(t *testing.T) Snapshot { return incident(t, talosOS) },
			want: []string{
				"critical kubelets-without-serving-certificate",
				"critical no-approver",
				"critical pending-csrs",
				"info duplicate-pending-csrs",
			},
			evidence: map[string][]string{
				IDKubeletsWithoutCert: {
					"node-a: probe of 10.0.0.1:10250: remote error: tls: internal error",
					"node-a: 4 kubelet-serving CSRs pending: csr-a1 (47m), csr-a2 (32m), csr-a3 (17m), csr-a4 (2m)",
					"no approver found",
				},
				IDNoApprover:       {"kubelet-serving CSRs in the API: 6 pending (oldest pending 47m)"},
				IDPendingCSRs:      {"node-b: waiting 41m; the policy would approve its newest CSR, csr-b2 (26m) (1 older pending CSR superseded by it); its kubelet serves no certificate"},
				IDDuplicatePending: {"node-a: 3 superseded, oldest csr-a1 (47m), by csr-a4"},
			},
		},
		{
			name: "no_serving_certificate_without_pending_csr",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes["node-c"] = probeNoCert("node-c", "10.0.0.3")
				s.CSRs = append(s.CSRs, withCondition(newCSR(t, "csr-c2", "node-c", "10.0.0.3", 10*time.Minute), certificatesv1.CertificateDenied, "ReservedName", "denied by csrguard", 9*time.Minute))
				kube.SortCSRs(s.CSRs)
				return s
			},
			want: []string{"critical kubelets-without-serving-certificate", "warning denied-csrs"},
			evidence: map[string][]string{
				IDKubeletsWithoutCert: {"node-c: no CSR pending; its newest kubelet-serving CSR csr-c2 is Denied (created 10m ago), reason ReservedName"},
				IDDeniedCSRs:          {"ReservedName: csr-c2 (node-c, created 10m ago): denied by csrguard"},
			},
		},
		{
			name: "no_serving_certificate_newest_csr_denied_by_policy",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes["node-c"] = probeNoCert("node-c", "10.0.0.3")
				addPending(t, &s, "csr-c2", "node-c", "10.0.0.3", 3*time.Minute, denyDecision)
				return s
			},
			want: []string{"critical kubelets-without-serving-certificate", "warning pending-csrs-policy-would-deny"},
			evidence: map[string][]string{
				IDKubeletsWithoutCert: {`node-c: the policy would deny its newest CSR csr-c2: ReservedName: reserved: DNS SAN "kubernetes.default.svc" is reserved`},
			},
		},
		{
			name:  "no_approver_rotation_on_nothing_pending",
			build: func(t *testing.T) Snapshot { s := healthy(t, ubuntuOS); s.Approvers = nil; return s },
			want:  []string{"warning no-approver"},
		},
		{
			name: "no_approver_young_pending",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Approvers = nil
				addPending(t, &s, "csr-a2", "node-a", "10.0.0.1", 2*time.Minute, approveDecision)
				return s
			},
			want: []string{"warning no-approver"},
		},
		{
			name: "no_approver_pending_over_grace_node_has_certificate",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Approvers = nil
				addPending(t, &s, "csr-a2", "node-a", "10.0.0.1", 10*time.Minute, approveDecision)
				return s
			},
			want: []string{"critical no-approver", "warning pending-csrs"},
		},
		{
			name: "approver_dry_run",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Approvers[0].Mode = "dry-run"
				addPending(t, &s, "csr-a2", "node-a", "10.0.0.1", 10*time.Minute, approveDecision)
				return s
			},
			want:     []string{"critical no-approver", "warning pending-csrs"},
			evidence: map[string][]string{IDNoApprover: {"running in dry-run mode, approving nothing"}},
		},
		{
			name: "approver_not_ready",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Approvers = []Approver{{Name: "kubelet-serving-cert-approver", Namespace: "kubelet-serving-cert-approver", Kind: servingcsr.ApproverAlex1989hu,
					Where: "Deployment kubelet-serving-cert-approver/kubelet-serving-cert-approver", Detail: "0/1 replicas ready"}}
				return s
			},
			want:     []string{"warning no-approver"},
			evidence: map[string][]string{IDNoApprover: {"approver kubelet-serving-cert-approver (Deployment kubelet-serving-cert-approver/kubelet-serving-cert-approver): not running; 0/1 replicas ready"}},
		},
		{
			name: "pending_api_view_no_issued_certificate",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes, s.ProbeNote = nil, "kubelets not probed; using what the API shows"
				s.CSRs = nil
				addPending(t, &s, "csr-b2", "node-b", "10.0.0.2", 10*time.Minute, approveDecision)
				return s
			},
			want: []string{"critical pending-csrs", "info probe-unavailable"},
			evidence: map[string][]string{
				IDPendingCSRs:      {"node-b: waiting 10m; the policy would approve its newest CSR, csr-b2 (10m); no issued serving certificate for it in the API", "csrguard (Deployment csrguard/csrguard) runs but has not approved them"},
				IDProbeUnavailable: {"kubelets not probed"},
			},
		},
		{
			name: "pending_api_view_issued_certificate",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes, s.ProbeNote = nil, "kubelets not probed; using what the API shows"
				addPending(t, &s, "csr-b2", "node-b", "10.0.0.2", 10*time.Minute, approveDecision)
				return s
			},
			want: []string{"warning pending-csrs", "info probe-unavailable"},
		},
		{
			name: "pending_young_with_approver",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-a2", "node-a", "10.0.0.1", 4*time.Minute, approveDecision)
				return s
			},
			want: []string{},
		},
		{
			name: "pending_policy_would_deny",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-evil", "node-b", "10.0.0.2", time.Minute, denyDecision)
				return s
			},
			want:     []string{"warning pending-csrs-policy-would-deny"},
			evidence: map[string][]string{IDPendingWouldDeny: {"reasons: ReservedName (1)", `csr-evil (node-b, pending 1m): ReservedName: reserved: DNS SAN "kubernetes.default.svc" is reserved`}},
		},
		{
			name: "pending_policy_would_hold",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-z", "node-z", "10.0.0.26", 30*time.Minute, holdDecision)
				return s
			},
			want:     []string{"warning pending-csrs-policy-would-hold"},
			evidence: map[string][]string{IDPendingWouldHold: {`csr-z (node-z, pending 30m): NodeNotFound: node-exists: node "node-z" does not exist`}},
		},
		{
			name: "pending_young_hold",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-z", "node-z", "10.0.0.26", time.Minute, holdDecision)
				return s
			},
			want: []string{},
		},
		{
			name: "approved_not_issued",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.CSRs = append(s.CSRs, withCondition(newCSR(t, "csr-a2", "node-a", "10.0.0.1", 6*time.Minute), certificatesv1.CertificateApproved, "AutoApproved", "", 5*time.Minute))
				return s
			},
			want:     []string{"critical approved-not-issued"},
			evidence: map[string][]string{IDApprovedNotIssued: {"csr-a2 (node-a): approved 5m ago, reason AutoApproved, no certificate"}},
		},
		{
			name: "approved_just_now",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.CSRs = append(s.CSRs, withCondition(newCSR(t, "csr-a2", "node-a", "10.0.0.1", time.Minute), certificatesv1.CertificateApproved, "AutoApproved", "", 30*time.Second))
				return s
			},
			want: []string{},
		},
		{
			name: "signer_failed",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				csr := withCondition(newCSR(t, "csr-a2", "node-a", "10.0.0.1", 3*time.Minute), certificatesv1.CertificateApproved, "AutoApproved", "", 3*time.Minute)
				s.CSRs = append(s.CSRs, withCondition(csr, certificatesv1.CertificateFailed, "SignerValidationFailure", "invalid usage for client certificate: server auth", 3*time.Minute))
				return s
			},
			want:     []string{"critical signer-failed"},
			evidence: map[string][]string{IDSignerFailed: {"csr-a2 (node-a, created 3m ago): SignerValidationFailure: invalid usage for client certificate: server auth"}},
		},
		{
			name: "duplicates_with_approver",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-a2", "node-a", "10.0.0.1", 16*time.Minute, approveDecision)
				addPending(t, &s, "csr-a3", "node-a", "10.0.0.1", time.Minute, approveDecision)
				return s
			},
			want: []string{"warning pending-csrs", "info duplicate-pending-csrs"},
		},
		{
			name: "soon_garbage_collected",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-z", "node-z", "10.0.0.26", 21*time.Hour, holdDecision)
				return s
			},
			want:     []string{"warning pending-csrs-policy-would-hold", "info csrs-soon-garbage-collected"},
			evidence: map[string][]string{IDSoonGarbageCollected: {"csr-z (node-z): pending 21h, deleted in about 3h"}},
		},
		{
			name: "pending_19h_not_yet_garbage",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				addPending(t, &s, "csr-z", "node-z", "10.0.0.26", 19*time.Hour, holdDecision)
				return s
			},
			want: []string{"warning pending-csrs-policy-would-hold"},
		},
		{
			name: "expired_served_certificate",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				setProbeCert(&s, "node-b", "10.0.0.2", newLeaf(t, leafSpec{node: "node-b", ip: "10.0.0.2", notBefore: now.Add(-400 * 24 * time.Hour), notAfter: now.Add(-35 * 24 * time.Hour)}))
				return s
			},
			want:     []string{"critical serving-certificate-expired"},
			evidence: map[string][]string{IDCertExpired: {"node-b: serving certificate (served, per probe) issued by kubelet-serving-ca expired 35d ago"}},
		},
		{
			name: "expired_issued_certificate_api_view",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes, s.ProbeNote = nil, "kubelets not probed; using what the API shows"
				s.CSRs = s.CSRs[:0]
				old := newLeaf(t, leafSpec{node: "node-b", ip: "10.0.0.2", notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(-time.Hour)})
				s.CSRs = append(s.CSRs, issuedCSR(t, "csr-b1", "node-b", "10.0.0.2", 50*time.Minute, old))
				return s
			},
			want:     []string{"critical serving-certificate-expired", "info probe-unavailable"},
			evidence: map[string][]string{IDCertExpired: {"node-b: serving certificate (newest issued CSR) issued by kubelet-serving-ca expired 1h ago"}},
		},
		{
			name: "expiring_in_three_days",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				setProbeCert(&s, "node-c", "10.0.0.3", newLeaf(t, leafSpec{node: "node-c", ip: "10.0.0.3", notBefore: now.Add(-362 * 24 * time.Hour), notAfter: now.Add(3 * 24 * time.Hour)}))
				return s
			},
			want:     []string{"warning serving-certificate-expiring"},
			evidence: map[string][]string{IDCertExpiring: {"node-c: serving certificate (served, per probe) issued by kubelet-serving-ca expires in 3d"}},
		},
		{
			name: "expiring_within_a_day",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				setProbeCert(&s, "node-c", "10.0.0.3", newLeaf(t, leafSpec{node: "node-c", ip: "10.0.0.3", notBefore: now.Add(-365 * 24 * time.Hour), notAfter: now.Add(12 * time.Hour)}))
				return s
			},
			want: []string{"critical serving-certificate-expiring"},
		},
		{
			name: "short_lived_not_yet_due",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				setProbeCert(&s, "node-c", "10.0.0.3", newLeaf(t, leafSpec{node: "node-c", ip: "10.0.0.3", notBefore: now.Add(-30 * time.Minute), notAfter: now.Add(30 * time.Minute)}))
				return s
			},
			want: []string{},
		},
		{
			name: "short_lived_overdue",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				setProbeCert(&s, "node-c", "10.0.0.3", newLeaf(t, leafSpec{node: "node-c", ip: "10.0.0.3", notBefore: now.Add(-55 * time.Minute), notAfter: now.Add(5 * time.Minute)}))
				return s
			},
			want: []string{"critical serving-certificate-expiring"},
		},
		{
			name: "san_mismatch",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				r := s.Probes["node-a"]
				r.SANsMatch, r.Extra = false, []string{"kubernetes.default.svc"}
				s.Probes["node-a"] = r
				return s
			},
			want:     []string{"warning serving-certificate-san-mismatch"},
			evidence: map[string][]string{IDCertSANMismatch: {"node-a: serving certificate SANs differ from the Node's addresses: extra kubernetes.default.svc"}},
		},
		{
			name: "untrusted",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				r := s.Probes["node-a"]
				r.State, r.Err = metrics.ProbeUntrusted, x509.UnknownAuthorityError{}
				s.Probes["node-a"] = r
				return s
			},
			want: []string{"warning serving-certificate-untrusted"},
		},
		{
			name: "shared_ca",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.PodTrustedCAs = []*x509.Certificate{otherCA(), servingCA()}
				return s
			},
			want:     []string{"warning shared-ca"},
			evidence: map[string][]string{IDSharedCA: {"node-a: serving certificate (served, per probe) is signed by CN=kubelet-serving-ca"}},
		},
		{
			name: "dedicated_ca",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.PodTrustedCAs = []*x509.Certificate{otherCA()}
				return s
			},
			want: []string{},
		},
		{
			name: "probe_failed_wholesale",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes, s.ProbeNote = nil, "kubelets unreachable from here (every probe failed: 3 timeout); using what the API shows"
				return s
			},
			want: []string{"info probe-unavailable"},
		},
		{
			name: "one_kubelet_unreachable",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.Probes["node-c"] = probeFailed("node-c", "10.0.0.3", metrics.ProbeRefused, "dial tcp 10.0.0.3:10250: connect: connection refused")
				return s
			},
			want:     []string{"info kubelets-unreachable"},
			evidence: map[string][]string{IDKubeletsUnreachable: {"node-c (10.0.0.3:10250): refused: dial tcp 10.0.0.3:10250: connect: connection refused"}},
		},
		{
			name: "cluster_discovery_failed",
			build: func(t *testing.T) Snapshot {
				s := healthy(t, ubuntuOS)
				s.ClusterErr = "get service default/kubernetes: forbidden"
				return s
			},
			want: []string{"info cluster-discovery-failed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diagnose(tt.build(t))
			if diff := cmp.Diff(ids(got), tt.want); diff != "" {
				t.Errorf("Diagnose() findings (-got +want):\n%s", diff)
			}
			for id, wants := range tt.evidence {
				f := findByID(got, id)
				if f == nil {
					t.Errorf("no finding %s", id)
					continue
				}
				for _, want := range wants {
					if !containsLine(f.Evidence, want) {
						t.Errorf("finding %s: no evidence line contains %q; evidence:\n  %s", id, want, strings.Join(f.Evidence, "\n  "))
					}
				}
			}
			for _, f := range got {
				if f.Title == "" || len(f.Evidence) == 0 || len(f.Fix) == 0 {
					t.Errorf("finding %s lacks a title, evidence or fix: %+v", f.ID, f)
				}
			}
		})
	}
}

func TestDiagnoseSortedAndPure(t *testing.T) {
	s := incident(t, talosOS)
	s.ClusterErr = "boom"
	first := Diagnose(s)
	for i := 1; i < len(first); i++ {
		a, b := first[i-1], first[i]
		if a.Severity < b.Severity || (a.Severity == b.Severity && a.ID > b.ID) {
			t.Errorf("findings out of order: %s %s before %s %s", a.Severity, a.ID, b.Severity, b.ID)
		}
	}
	if diff := cmp.Diff(Diagnose(s), first); diff != "" {
		t.Errorf("second Diagnose differs (-got +want):\n%s", diff)
	}
}

// TestFixesTalosAndGeneric checks that rotation and approver fixes show the
// Talos way on Talos and the generic way elsewhere.
func TestFixesTalosAndGeneric(t *testing.T) {
	tests := []struct {
		name    string
		os      string
		want    []string
		notWant []string
	}{
		{
			name: "talos",
			os:   talosOS,
			want: []string{
				"kind: KubeExternalManifestConfig\nname: csrguard\nurl: https://github.com/csrguard/csrguard/releases/download/v0.1.0/install.yaml",
				"machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: true\ncluster:\n  extraManifests:\n    - https://github.com/csrguard/csrguard/releases/download/v0.1.0/install.yaml",
				"talosctl patch mc --nodes 10.0.0.1 --patch @csrguard.yaml",
			},
			notWant: []string{"serverTLSBootstrap: true in the KubeletConfiguration", "helm install"},
		},
		{
			name: "generic",
			os:   ubuntuOS,
			want: []string{
				"kubectl apply -f https://github.com/csrguard/csrguard/releases/download/v0.1.0/install.yaml",
				"helm install csrguard " + buildinfo.HelmChart,
				"serverTLSBootstrap: true",
				"csrguard explain csr-",
				"kubectl certificate approve csr-",
			},
			notWant: []string{"talosctl", "KubeExternalManifestConfig", "extraManifests"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			findings := Diagnose(incident(t, tt.os))
			f := findByID(findings, IDNoApprover)
			if f == nil {
				t.Fatalf("no %s finding", IDNoApprover)
			}
			fixes := strings.Join(f.Fix, "\n")
			for _, want := range tt.want {
				if !strings.Contains(fixes, want) {
					t.Errorf("no-approver fixes lack %q:\n%s", want, fixes)
				}
			}
			var all []string
			for _, f := range findings {
				all = append(all, f.Fix...)
			}
			for _, bad := range tt.notWant {
				if strings.Contains(strings.Join(all, "\n"), bad) {
					t.Errorf("fixes contain %q on %s", bad, tt.name)
				}
			}
			short := findByID(findings, IDKubeletsWithoutCert)
			if tt.os == talosOS && !containsLine(short.Fix, "talosctl patch mc --nodes 10.0.0.1") {
				t.Errorf("kubelets-without-serving-certificate fix lacks the Talos install: %q", short.Fix)
			}
		})
	}
}

func TestTalosctlPatchWithoutControlPlaneLabel(t *testing.T) {
	s := incident(t, talosOS)
	s.Nodes[0].Labels = nil
	f := findByID(Diagnose(s), IDNoApprover)
	if !containsLine(f.Fix, "talosctl patch mc --nodes <control-plane-ip> --patch @csrguard.yaml") {
		t.Errorf("fix lacks the placeholder: %q", f.Fix)
	}
}

func findByID(findings []Finding, id string) *Finding {
	for i := range findings {
		if findings[i].ID == id {
			return &findings[i]
		}
	}
	return nil
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// TestNoApproveAdviceForRejectedCSR checks that the incident's fixes never
// suggest approving a CSR the policy would deny.
func TestNoApproveAdviceForRejectedCSR(t *testing.T) {
	s := healthy(t, ubuntuOS)
	s.Probes["node-c"] = probeNoCert("node-c", "10.0.0.3")
	addPending(t, &s, "csr-c2", "node-c", "10.0.0.3", 3*time.Minute, denyDecision)
	for _, f := range Diagnose(s) {
		if containsLine(f.Fix, "approve csr-c2") {
			t.Errorf("finding %s suggests approving csr-c2: %q", f.ID, f.Fix)
		}
	}
}
