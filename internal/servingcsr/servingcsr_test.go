package servingcsr_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func TestNodeName(t *testing.T) {
	tests := []struct {
		name     string
		username string
		wantName string
		wantOK   bool
	}{
		{name: "node", username: "system:node:node-a", wantName: "node-a", wantOK: true},
		{name: "fqdn_node", username: "system:node:ip-10-0-0-1.ec2.internal", wantName: "ip-10-0-0-1.ec2.internal", wantOK: true},
		{name: "empty_name", username: "system:node:"},
		{name: "uppercase_name", username: "system:node:Node-A"},
		{name: "underscore_name", username: "system:node:node_a"},
		{name: "trailing_dot", username: "system:node:node-a."},
		{name: "colon_in_name", username: "system:node:node-a:x"},
		{name: "service_account", username: "system:serviceaccount:kube-system:node-a"},
		{name: "wrong_case_prefix", username: "System:Node:node-a"},
		{name: "empty", username: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotName, gotOK := servingcsr.NodeName(tt.username)
			if gotName != tt.wantName || gotOK != tt.wantOK {
				t.Errorf("NodeName(%q) = %q, %v, want %q, %v", tt.username, gotName, gotOK, tt.wantName, tt.wantOK)
			}
		})
	}
}

func TestStateOf(t *testing.T) {
	cond := func(t certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: t, Status: "True"}
	}
	tests := []struct {
		name       string
		conditions []certificatesv1.CertificateSigningRequestCondition
		cert       []byte
		want       servingcsr.State
		wantFinal  bool
	}{
		{name: "pending", want: "Pending"},
		{name: "approved", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved)}, want: "Approved", wantFinal: true},
		{name: "issued", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved)}, cert: []byte("cert"), want: "Issued", wantFinal: true},
		{name: "certificate_without_condition", cert: []byte("cert"), want: "Issued", wantFinal: true},
		{name: "denied", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateDenied)}, want: "Denied", wantFinal: true},
		{name: "failed", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved), cond(certificatesv1.CertificateFailed)}, want: "Failed", wantFinal: true},
		{name: "unrelated_condition", conditions: []certificatesv1.CertificateSigningRequestCondition{cond("Custom")}, want: "Pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := csrtest.New(t)
			csr.Status.Conditions = tt.conditions
			csr.Status.Certificate = tt.cert
			if got := servingcsr.StateOf(csr); got != tt.want {
				t.Errorf("StateOf() = %q, want %q", got, tt.want)
			}
			if got := servingcsr.IsFinal(csr); got != tt.wantFinal {
				t.Errorf("IsFinal() = %v, want %v", got, tt.wantFinal)
			}
		})
	}
}

func TestApprovedAt(t *testing.T) {
	created := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	updated, transitioned := created.Add(2*time.Minute), created.Add(time.Minute)
	approved := func(update, transition time.Time) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: "True",
			LastUpdateTime: metav1.NewTime(update), LastTransitionTime: metav1.NewTime(transition)}
	}
	tests := []struct {
		name       string
		conditions []certificatesv1.CertificateSigningRequestCondition
		want       time.Time
	}{
		{name: "update_time", conditions: []certificatesv1.CertificateSigningRequestCondition{approved(updated, transitioned)}, want: updated},
		{name: "transition_time_only", conditions: []certificatesv1.CertificateSigningRequestCondition{approved(time.Time{}, transitioned)}, want: transitioned},
		// Neither time: approved no earlier than created.
		{name: "no_time", conditions: []certificatesv1.CertificateSigningRequestCondition{approved(time.Time{}, time.Time{})}, want: created},
		{
			name: "other_conditions_ignored",
			conditions: []certificatesv1.CertificateSigningRequestCondition{
				{Type: "Custom", LastUpdateTime: metav1.NewTime(created.Add(time.Hour))},
				approved(updated, transitioned),
			},
			want: updated,
		},
		{name: "not_approved", conditions: []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, LastUpdateTime: metav1.NewTime(updated)}}},
		{name: "pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := csrtest.New(t, csrtest.CreatedAt(created))
			csr.Status.Conditions = tt.conditions
			if got := servingcsr.ApprovedAt(csr); !got.Equal(tt.want) {
				t.Errorf("ApprovedAt() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestApprovedByOther(t *testing.T) {
	approved := func(reason string) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: "True", Reason: reason}
	}
	tests := []struct {
		name       string
		conditions []certificatesv1.CertificateSigningRequestCondition
		cert       []byte
		want       bool
	}{
		{name: "approved_by_other", conditions: []certificatesv1.CertificateSigningRequestCondition{approved("AutoApproved")}, want: true},
		{name: "issued_by_other", conditions: []certificatesv1.CertificateSigningRequestCondition{approved("KubectlApprove")}, cert: []byte("cert"), want: true},
		{name: "no_reason", conditions: []certificatesv1.CertificateSigningRequestCondition{approved("")}, want: true},
		{name: "approved_by_csrguard", conditions: []certificatesv1.CertificateSigningRequestCondition{approved(servingcsr.ApprovedReason)}},
		{name: "issued_by_csrguard", conditions: []certificatesv1.CertificateSigningRequestCondition{approved(servingcsr.ApprovedReason)}, cert: []byte("cert")},
		{name: "approved_then_failed", conditions: []certificatesv1.CertificateSigningRequestCondition{approved("AutoApproved"), {Type: certificatesv1.CertificateFailed, Status: "True"}}},
		{name: "denied", conditions: []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: "True", Reason: "AutoDenied"}}},
		{name: "certificate_without_condition", cert: []byte("cert")},
		{name: "pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := csrtest.New(t)
			csr.Status.Conditions = tt.conditions
			csr.Status.Certificate = tt.cert
			if got := servingcsr.ApprovedByOther(csr); got != tt.want {
				t.Errorf("ApprovedByOther() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInScope(t *testing.T) {
	tests := []struct {
		name   string
		signer string
		want   bool
	}{
		{name: "kubelet_serving", signer: "kubernetes.io/kubelet-serving", want: true},
		{name: "kube_apiserver_client_kubelet", signer: "kubernetes.io/kube-apiserver-client-kubelet"},
		{name: "legacy_unknown", signer: "kubernetes.io/legacy-unknown"},
		{name: "empty", signer: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := servingcsr.InScope(csrtest.New(t, csrtest.SignerName(tt.signer))); got != tt.want {
				t.Errorf("InScope() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromCSR(t *testing.T) {
	created := time.Date(2026, time.March, 4, 5, 6, 7, 0, time.UTC)
	csr := csrtest.New(t, csrtest.ExpirationSeconds(3600), csrtest.CreatedAt(created))
	got := servingcsr.FromCSR(csr)
	exp := int32(3600)
	want := servingcsr.Request{
		Name:              "csr-node-a",
		SignerName:        servingcsr.SignerName,
		Username:          "system:node:node-a",
		Groups:            []string{"system:nodes", "system:authenticated"},
		Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		ExpirationSeconds: &exp,
		PEM:               csr.Spec.Request,
		Created:           created,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("FromCSR() mismatch (-got +want):\n%s", diff)
	}

	// The Request must share no memory with the (possibly cached) object.
	csr.Spec.Groups[0] = "changed"
	csr.Spec.Usages[0] = "changed"
	csr.Spec.Request[0] = 'X'
	*csr.Spec.ExpirationSeconds = 1
	csr.CreationTimestamp = metav1.NewTime(created.Add(time.Hour))
	if got.Groups[0] == "changed" || got.Usages[0] == "changed" || got.PEM[0] == 'X' || *got.ExpirationSeconds == 1 || !got.Created.Equal(created) {
		t.Errorf("FromCSR() result changed with the CSR: %+v", got)
	}
}

// TestFromAPI: a CSR read from the API server gives the Request FromCSR gives, marked as one whose
// signature the API server verified; FromCSR's is not.
func TestFromAPI(t *testing.T) {
	csr := csrtest.New(t, csrtest.ExpirationSeconds(3600))
	want := servingcsr.FromCSR(csr)
	if want.SignatureChecked {
		t.Error("FromCSR() marks the signature checked; only FromAPI may")
	}
	want.SignatureChecked = true
	if diff := cmp.Diff(servingcsr.FromAPI(csr), want); diff != "" {
		t.Errorf("FromAPI() mismatch (-got +want):\n%s", diff)
	}
}

// reencode returns the PEM of the request in valid with its DER changed by edit.
func reencode(t *testing.T, valid []byte, edit func(der []byte) []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(valid)
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: edit(bytes.Clone(block.Bytes))})
}

func TestParse(t *testing.T) {
	valid := csrtest.New(t).Spec.Request
	block, _ := pem.Decode(valid)
	tests := []struct {
		name       string
		pem        []byte
		wantReason string // "" means no error
	}{
		{name: "ecdsa_p256", pem: valid},
		{name: "rsa_2048", pem: csrtest.New(t, csrtest.Key(csrtest.RSA2048)).Spec.Request},
		{name: "ed25519", pem: csrtest.New(t, csrtest.Key(csrtest.Ed25519)).Spec.Request},
		{name: "surrounding_whitespace", pem: append(append([]byte("\n \t"), valid...), "\n\r\n  "...)},
		{name: "empty", wantReason: servingcsr.MalformedRequest},
		{name: "garbage", pem: []byte("not a certificate request"), wantReason: servingcsr.MalformedRequest},
		{name: "leading_text", pem: append([]byte("hello\n"), valid...), wantReason: servingcsr.MalformedRequest},
		{name: "trailing_data", pem: append(bytes.Clone(valid), "x"...), wantReason: servingcsr.MalformedRequest},
		{name: "two_blocks", pem: append(bytes.Clone(valid), valid...), wantReason: servingcsr.MalformedRequest},
		{name: "broken_block_then_valid", pem: append([]byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!\n"), valid...), wantReason: servingcsr.MalformedRequest},
		{name: "unterminated_block", pem: valid[:len(valid)-10], wantReason: servingcsr.MalformedRequest},
		{name: "wrong_type", pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), wantReason: servingcsr.MalformedRequest},
		{name: "new_certificate_request_type", pem: pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: block.Bytes}), wantReason: servingcsr.MalformedRequest},
		{name: "headers", pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes}), wantReason: servingcsr.MalformedRequest},
		{name: "der_garbage", pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}), wantReason: servingcsr.MalformedRequest},
		{name: "der_trailing_data", pem: reencode(t, valid, func(der []byte) []byte { return append(der, 0) }), wantReason: servingcsr.MalformedRequest},
		{name: "der_truncated", pem: reencode(t, valid, func(der []byte) []byte { return der[:len(der)-1] }), wantReason: servingcsr.MalformedRequest},
		{name: "tampered_signature", pem: reencode(t, valid, func(der []byte) []byte { der[len(der)-1] ^= 0x01; return der }), wantReason: servingcsr.InvalidSignature},
		{name: "tampered_subject", pem: reencode(t, valid, func(der []byte) []byte {
			return bytes.Replace(der, []byte("system:node:node-a"), []byte("system:node:node-b"), 1)
		}), wantReason: servingcsr.InvalidSignature},
	}
	// ParseUnverified refuses everything Parse does, but a bad signature.
	parsers := []struct {
		name       string
		parse      func([]byte) (*x509.CertificateRequest, error)
		signatures bool
	}{
		{"Parse", servingcsr.Parse, true},
		{"ParseUnverified", servingcsr.ParseUnverified, false},
	}
	for _, p := range parsers {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				want := tt.wantReason
				if want == servingcsr.InvalidSignature && !p.signatures {
					want = ""
				}
				csr, err := p.parse(tt.pem)
				var gotReason string
				if err != nil {
					var perr *servingcsr.ParseError
					if !errors.As(err, &perr) {
						t.Fatalf("%s() error = %v, want a *ParseError", p.name, err)
					}
					gotReason = perr.Reason
				}
				if gotReason != want {
					t.Fatalf("%s() reason = %q (err %v), want %q", p.name, gotReason, err, want)
				}
				if err == nil && csr.Subject.CommonName != "system:node:node-a" && tt.name != "tampered_subject" {
					t.Errorf("%s() CN = %q, want system:node:node-a", p.name, csr.Subject.CommonName)
				}
				if err != nil && bytes.Contains([]byte(err.Error()), []byte("BEGIN")) {
					t.Errorf("%s() error %q contains PEM data", p.name, err)
				}
			})
		}
	}
}

// FuzzParseUnverified: whatever ParseUnverified accepts and the API server would store is the one
// request the API server verified — the DER of the first block pem.Decode finds, when it is a
// CERTIFICATE REQUEST, as its validation reads spec.request (certificates.ParseCSR) — and Parse
// refuses it for its signature only, if at all.
func FuzzParseUnverified(f *testing.F) {
	valid := csrtest.New(f).Spec.Request
	f.Add(valid)
	f.Add(csrtest.TamperSignature(f, valid))
	f.Add(append([]byte("\t \n"), valid...))
	f.Add(append([]byte(" "), valid...))
	f.Add(bytes.ReplaceAll(valid, []byte("\n"), []byte("\r\n")))
	f.Add(append(bytes.Clone(valid), valid...))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		csr, err := servingcsr.ParseUnverified(in)
		if err != nil {
			if _, perr := servingcsr.Parse(in); perr == nil {
				t.Fatalf("Parse() accepted what ParseUnverified() refused: %v", err)
			}
			return
		}
		// The API server refuses a request whose first block is not a CERTIFICATE REQUEST.
		if block, _ := pem.Decode(in); block != nil && block.Type == "CERTIFICATE REQUEST" && !bytes.Equal(block.Bytes, csr.Raw) {
			t.Fatal("ParseUnverified() accepted another request than the one the API server verifies")
		}
		if _, err := servingcsr.Parse(in); err != nil {
			var perr *servingcsr.ParseError
			if !errors.As(err, &perr) || perr.Reason != servingcsr.InvalidSignature {
				t.Fatalf("Parse() refused for another reason than the signature what ParseUnverified() accepted: %v", err)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	valid := csrtest.New(f).Spec.Request
	f.Add(valid)
	f.Add(csrtest.New(f, csrtest.Key(csrtest.Ed25519), csrtest.IPAddresses("fd00::10")).Spec.Request)
	f.Add(append(bytes.Clone(valid), valid...))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		csr, err := servingcsr.Parse(in)
		if err != nil {
			var perr *servingcsr.ParseError
			if !errors.As(err, &perr) || (perr.Reason != servingcsr.MalformedRequest && perr.Reason != servingcsr.InvalidSignature) {
				t.Fatalf("Parse() error = %#v, want a *ParseError with a known reason", err)
			}
			return
		}
		if csr == nil {
			t.Fatal("Parse() = nil, nil")
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("Parse() accepted a request with a bad signature: %v", err)
		}
		if n := bytes.Count(in, []byte("-----BEGIN")); n != 1 {
			t.Fatalf("Parse() accepted input with %d PEM blocks", n)
		}
	})
}
