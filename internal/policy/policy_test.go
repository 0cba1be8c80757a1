package policy_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func TestEvaluate(t *testing.T) {
	valid := csrtest.New(t).Spec.Request
	basicConstraints := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: mustMarshal(t, struct{ IsCA bool }{true})}
	extKeyUsage := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: mustMarshal(t, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}})}

	tests := []struct {
		name  string
		opts  []csrtest.Option
		req   func(*servingcsr.Request)
		cfg   func(*policy.Config)
		facts func(*fakeFacts)
		age   time.Duration // request age at evaluation; 0 means one hour, long settled
		want  outcome
	}{
		// Legitimate kubelet requests.
		{name: "ecdsa_p256", want: approved()},
		{name: "ecdsa_p384", opts: []csrtest.Option{csrtest.Key(csrtest.ECDSAP384)}, want: approved()},
		{name: "ed25519", opts: []csrtest.Option{csrtest.Key(csrtest.Ed25519)}, want: approved()},
		{name: "rsa_2048", opts: []csrtest.Option{csrtest.Key(csrtest.RSA2048)}, want: approved()},
		{name: "rsa_2048_key_encipherment", opts: []csrtest.Option{csrtest.Key(csrtest.RSA2048), csrtest.Usages(ke, ds, sa)}, want: approved()},
		{name: "rsa_4096_key_encipherment", opts: []csrtest.Option{csrtest.Key(csrtest.RSA4096), csrtest.Usages(sa, ke, ds)}, want: approved()},
		{name: "usages_any_order", opts: []csrtest.Option{csrtest.Usages(sa, ds)}, want: approved()},
		{name: "ipv6_only", opts: []csrtest.Option{csrtest.IPAddresses("fd00::10")}, want: approved()},
		{name: "dual_stack", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.10", "fd00::10")}, want: approved()},
		{name: "ip_only", opts: []csrtest.Option{csrtest.DNSNames()}, want: approved()},
		{name: "dns_only", opts: []csrtest.Option{csrtest.IPAddresses()}, want: approved()},
		{name: "every_address_type", opts: []csrtest.Option{
			csrtest.DNSNames("node-a", "node-a.internal.example", "node-a.example.com"),
			csrtest.IPAddresses("10.0.0.10", "fd00::10", "203.0.113.10"),
		}, want: approved()},
		{name: "ipv4_mapped_ipv6_san", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, dnsGN("node-a"), ipGN("::ffff:10.0.0.10")))}, want: approved()},
		{name: "ipv4_mapped_node_address", facts: func(f *fakeFacts) {
			f.nodes["node-a"] = node("node-a", "Hostname=node-a", "InternalIP=::ffff:10.0.0.10")
		}, want: approved()},
		{name: "ipv6_node_address_not_canonical", opts: []csrtest.Option{csrtest.IPAddresses("fd00::10")}, facts: func(f *fakeFacts) {
			f.nodes["node-a"] = node("node-a", "Hostname=node-a", "InternalIP=FD00:0:0:0::10")
		}, want: approved()},
		{name: "uppercase_dns_san", opts: []csrtest.Option{csrtest.DNSNames("NODE-A", "Node-A.Example.COM")}, want: approved()},
		{name: "node_hostname_uppercase_trailing_dot", facts: func(f *fakeFacts) {
			f.nodes["node-a"] = node("node-a", "Hostname=NODE-A.", "InternalIP=10.0.0.10")
		}, want: approved()},
		{name: "duplicate_sans", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a"), csrtest.IPAddresses("10.0.0.10", "10.0.0.10")}, want: approved()},
		{name: "sans_at_max", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a.example.com")}, cfg: func(c *policy.Config) { c.MaxSANs = 3 }, want: approved()},
		{name: "expiration_at_max", opts: []csrtest.Option{csrtest.ExpirationSeconds(8760 * 3600)}, want: approved()},
		{name: "fqdn_node_name", opts: []csrtest.Option{csrtest.Node("node-c.example.com"), csrtest.IPAddresses("10.0.0.12")}, facts: func(f *fakeFacts) {
			f.nodes["node-c.example.com"] = node("node-c.example.com", "Hostname=node-c.example.com", "InternalIP=10.0.0.12")
		}, want: approved()},

		// Kubelets before v1.27 ask for key encipherment with every key type.
		{name: "old_kubelet_ecdsa_key_encipherment", opts: []csrtest.Option{csrtest.Usages(ke, ds, sa)}, want: approved()},
		{name: "old_kubelet_ed25519_key_encipherment", opts: []csrtest.Option{csrtest.Key(csrtest.Ed25519), csrtest.Usages(ds, ke, sa)}, want: approved()},
		{name: "old_kubelet_p384_key_encipherment", opts: []csrtest.Option{csrtest.Key(csrtest.ECDSAP384), csrtest.Usages(sa, ds, ke)}, want: approved()},
		// The kubelet reads Node addresses with ParseIPSloppy: leading zeros are the same address.
		{name: "node_address_leading_zeros", facts: func(f *fakeFacts) {
			f.nodes["node-a"] = node("node-a", "Hostname=node-a", "InternalIP=010.000.000.010")
		}, want: approved()},
		{name: "node_hostname_ip_leading_zeros", opts: []csrtest.Option{csrtest.DNSNames(), csrtest.IPAddresses("10.0.0.50")}, facts: func(f *fakeFacts) {
			f.nodes["node-a"] = node("node-a", "Hostname=010.0.0.050")
		}, want: approved()},
		{name: "dns_numbers_inside_labels", opts: []csrtest.Option{csrtest.DNSNames("node-a", "1node.rack-2.example.com")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=1node.rack-2.example.com")
		}, want: approved()},
		{name: "dns_two_labels_not_a_namespace", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a.lab")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=node-a.lab")
		}, want: approved()},
		{name: "dns_three_labels_not_a_namespace", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a.rack1.lab")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=node-a.rack1.lab")
		}, want: approved()},
		{name: "dns_four_labels_ending_in_namespace", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a.dc1.corp.vault")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=node-a.dc1.corp.vault")
		}, want: approved()},
		{name: "fqdn_first_label_is_own_name", opts: []csrtest.Option{csrtest.DNSNames("node-a.internal.example")}, want: approved()},
		// An address node-a owns stays node-a's while another node squats it.
		{name: "owner_while_squatted", facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=10.0.0.10")
			f.claims["10.0.0.10"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-time.Hour)}
		}, want: approved()},
		{name: "owner_of_name_while_squatted", opts: []csrtest.Option{csrtest.DNSNames("node-a.example.com"), csrtest.IPAddresses()}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "ExternalDNS=node-a.example.com")
			f.claims["node-a.example.com"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-time.Hour)}
		}, want: approved()},
		{name: "claim_run_out", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.20")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=10.0.0.20")
			f.claims["10.0.0.20"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-24 * time.Hour), Released: csrtest.Created}
		}, want: approved()},

		// signer
		{name: "signer_kube_apiserver_client_kubelet", opts: []csrtest.Option{csrtest.SignerName("kubernetes.io/kube-apiserver-client-kubelet")}, want: denied("signer", policy.SignerNotKubeletServing)},
		{name: "signer_empty", opts: []csrtest.Option{csrtest.SignerName("")}, want: denied("signer", policy.SignerNotKubeletServing)},

		// requester
		{name: "username_service_account", opts: []csrtest.Option{csrtest.Username("system:serviceaccount:kube-system:node-a")}, want: denied("requester", policy.RequesterNotNode)},
		{name: "username_empty_node_name", opts: []csrtest.Option{csrtest.Username("system:node:"), csrtest.CommonName("system:node:")}, want: denied("requester", policy.RequesterNotNode)},
		{name: "username_invalid_node_name", opts: []csrtest.Option{csrtest.Username("system:node:Node_A"), csrtest.CommonName("system:node:Node_A")}, want: denied("requester", policy.RequesterNotNode)},
		{name: "username_admin", opts: []csrtest.Option{csrtest.Username("kubernetes-admin")}, want: denied("requester", policy.RequesterNotNode)},
		{name: "groups_missing_nodes", opts: []csrtest.Option{csrtest.Groups("system:authenticated")}, want: denied("requester", policy.RequesterGroupsInvalid)},
		{name: "groups_missing_authenticated", opts: []csrtest.Option{csrtest.Groups("system:nodes")}, want: denied("requester", policy.RequesterGroupsInvalid)},
		{name: "groups_empty", opts: []csrtest.Option{csrtest.Groups()}, want: denied("requester", policy.RequesterGroupsInvalid)},

		// request-encoding
		{name: "pem_garbage", opts: []csrtest.Option{csrtest.PEM([]byte("garbage"))}, want: denied("request-encoding", policy.MalformedRequest)},
		{name: "pem_empty", opts: []csrtest.Option{csrtest.PEM([]byte{})}, want: denied("request-encoding", policy.MalformedRequest)},
		{name: "pem_two_blocks", opts: []csrtest.Option{csrtest.PEM(append(bytes.Clone(valid), valid...))}, want: denied("request-encoding", policy.MalformedRequest)},
		{name: "pem_trailing_data", opts: []csrtest.Option{csrtest.PEM(append(bytes.Clone(valid), "trailing"...))}, want: denied("request-encoding", policy.MalformedRequest)},
		{name: "signature_tampered", opts: []csrtest.Option{csrtest.PEM(csrtest.TamperSignature(t, valid))}, want: denied("request-encoding", policy.InvalidSignature)},
		// A request the API server holds had its signature verified there (servingcsr.FromAPI;
		// TestAPIServerVerifiesRequests shows it): it is not verified again, but parsed as strictly.
		{name: "signature_verified_by_api_server", opts: []csrtest.Option{csrtest.PEM(csrtest.TamperSignature(t, valid))}, req: func(r *servingcsr.Request) {
			r.SignatureChecked = true
		}, want: approved()},
		{name: "signature_verified_by_api_server_still_parsed", opts: []csrtest.Option{csrtest.PEM(append([]byte("junk\n"), valid...))}, req: func(r *servingcsr.Request) {
			r.SignatureChecked = true
		}, want: denied("request-encoding", policy.MalformedRequest)},

		// subject
		{name: "cn_other_node", opts: []csrtest.Option{csrtest.CommonName("system:node:node-b")}, want: denied("subject", policy.SubjectMismatch)},
		{name: "cn_empty", opts: []csrtest.Option{csrtest.CommonName("")}, want: denied("subject", policy.SubjectMismatch)},
		{name: "cn_twice", opts: []csrtest.Option{csrtest.Subject(pkix.Name{
			Organization: []string{"system:nodes"},
			ExtraNames:   []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "system:node:node-b"}, {Type: oidCommonName, Value: "system:node:node-a"}},
		})}, want: denied("subject", policy.SubjectMismatch)},
		{name: "subject_extra_ou", opts: []csrtest.Option{csrtest.Subject(pkix.Name{
			CommonName: "system:node:node-a", Organization: []string{"system:nodes"},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidOU, Value: "admins"}},
		})}, want: denied("subject", policy.SubjectMismatch)},
		{name: "o_missing", opts: []csrtest.Option{csrtest.Organization()}, want: denied("subject", policy.OrganizationInvalid)},
		{name: "o_masters", opts: []csrtest.Option{csrtest.Organization("system:masters")}, want: denied("subject", policy.OrganizationInvalid)},
		{name: "o_extra", opts: []csrtest.Option{csrtest.Organization("system:nodes", "system:masters")}, want: denied("subject", policy.OrganizationInvalid)},
		{name: "o_twice", opts: []csrtest.Option{csrtest.Organization("system:nodes", "system:nodes")}, want: denied("subject", policy.OrganizationInvalid)},

		// san-types
		{name: "email_san", opts: []csrtest.Option{csrtest.Emails("root@node-a")}, want: denied("san-types", policy.SANTypeForbidden)},
		{name: "uri_san", opts: []csrtest.Option{csrtest.URIs("spiffe://cluster.local/ns/kube-system/sa/default")}, want: denied("san-types", policy.SANTypeForbidden)},
		{name: "other_name_san", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, dnsGN("node-a"), otherNameGN(t)))}, want: denied("san-types", policy.SANTypeForbidden)},
		{name: "universal_class_san", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, dnsGN("node-a"), asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte("kubernetes")}))}, want: denied("san-types", policy.SANTypeForbidden)},
		{name: "no_sans", opts: []csrtest.Option{csrtest.DNSNames(), csrtest.IPAddresses()}, want: denied("san-types", policy.NoSANs)},
		{name: "too_many_sans", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a.example.com", "node-a.internal.example")}, cfg: func(c *policy.Config) { c.MaxSANs = 3 }, want: denied("san-types", policy.TooManySANs)},
		{name: "extension_basic_constraints", opts: []csrtest.Option{csrtest.Extensions(basicConstraints)}, want: denied("san-types", policy.ExtensionForbidden)},
		{name: "extension_ext_key_usage", opts: []csrtest.Option{csrtest.Extensions(extKeyUsage)}, want: denied("san-types", policy.ExtensionForbidden)},
		{name: "dns_wildcard", opts: []csrtest.Option{csrtest.DNSNames("*.node-a")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_trailing_dot", opts: []csrtest.Option{csrtest.DNSNames("node-a.")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_empty_label", opts: []csrtest.Option{csrtest.DNSNames("node..a")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_empty", opts: []csrtest.Option{csrtest.DNSNames("")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_label_too_long", opts: []csrtest.Option{csrtest.DNSNames(strings.Repeat("a", 64) + ".example")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_name_too_long", opts: []csrtest.Option{csrtest.DNSNames(strings.Repeat("abcdefgh.", 28) + "example")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_underscore", opts: []csrtest.Option{csrtest.DNSNames("node_a")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_leading_hyphen", opts: []csrtest.Option{csrtest.DNSNames("-node-a")}, want: denied("san-types", policy.DNSNameInvalid)},
		{name: "dns_ip_literal", opts: []csrtest.Option{csrtest.DNSNames("10.96.0.1")}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_literal_of_own_node", opts: []csrtest.Option{csrtest.DNSNames("node-a", "10.0.0.10")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=10.0.0.10")
		}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_leading_zeros", opts: []csrtest.Option{csrtest.DNSNames("010.000.000.001")}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_short_form", opts: []csrtest.Option{csrtest.DNSNames("10.1")}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_integer", opts: []csrtest.Option{csrtest.DNSNames("167772161")}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_hex", opts: []csrtest.Option{csrtest.DNSNames("0x0A000001")}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_hex_empty", opts: []csrtest.Option{csrtest.DNSNames("0x.1")}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "dns_ip_mixed_forms", opts: []csrtest.Option{csrtest.DNSNames("0x7f.1")}, want: denied("san-types", policy.DNSNameIsAddress)},
		// A name with a non-numeric label is a name to resolvers and URL parsers: it is judged
		// like any other name.
		{name: "dns_numeric_last_label_not_on_node", opts: []csrtest.Option{csrtest.DNSNames("node-a.123")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "dns_five_numeric_labels_not_on_node", opts: []csrtest.Option{csrtest.DNSNames("1.2.3.4.5")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "alibaba_node_name", opts: []csrtest.Option{csrtest.Node("cn-hangzhou.192.168.0.5"), csrtest.DNSNames("cn-hangzhou.192.168.0.5"), csrtest.IPAddresses("192.168.0.5")}, facts: func(f *fakeFacts) {
			f.nodes["cn-hangzhou.192.168.0.5"] = node("cn-hangzhou.192.168.0.5", "Hostname=cn-hangzhou.192.168.0.5", "InternalIP=192.168.0.5")
		}, want: approved()},
		{name: "dns_with_space", opts: []csrtest.Option{csrtest.DNSNames("node-a example.com")}, want: denied("san-types", policy.DNSNameInvalid)},

		// usages
		{name: "usages_client_auth_added", opts: []csrtest.Option{csrtest.Usages(ds, sa, ca)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_client_auth_only", opts: []csrtest.Option{csrtest.Usages(ds, ca)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_missing_digital_signature", opts: []csrtest.Option{csrtest.Usages(sa)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_empty", opts: []csrtest.Option{csrtest.Usages()}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_duplicate", opts: []csrtest.Option{csrtest.Usages(ds, sa, sa)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_key_encipherment_client_auth", opts: []csrtest.Option{csrtest.Usages(ke, ds, sa, ca)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_key_encipherment_without_server_auth", opts: []csrtest.Option{csrtest.Usages(ke, ds)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_rsa_key_encipherment_twice", opts: []csrtest.Option{csrtest.Key(csrtest.RSA2048), csrtest.Usages(ke, ds, sa, ke)}, want: denied("usages", policy.UsagesInvalid)},
		{name: "usages_rsa_key_encipherment_client_auth", opts: []csrtest.Option{csrtest.Key(csrtest.RSA2048), csrtest.Usages(ke, ds, ca)}, want: denied("usages", policy.UsagesInvalid)},

		// key
		{name: "key_ecdsa_p224", opts: []csrtest.Option{csrtest.Key(csrtest.ECDSAP224)}, want: denied("key", policy.KeyNotAllowed)},
		{name: "key_ecdsa_p521", opts: []csrtest.Option{csrtest.Key(csrtest.ECDSAP521)}, want: denied("key", policy.KeyNotAllowed)},
		{name: "key_rsa_1024", opts: []csrtest.Option{csrtest.Key(csrtest.RSA1024)}, want: denied("key", policy.KeyNotAllowed)},

		// expiration
		{name: "expiration_above_max", opts: []csrtest.Option{csrtest.ExpirationSeconds(8760*3600 + 1)}, want: denied("expiration", policy.ExpirationTooLong)},
		{name: "expiration_above_configured_max", opts: []csrtest.Option{csrtest.ExpirationSeconds(3601)}, cfg: func(c *policy.Config) { c.MaxExpiration = time.Hour }, want: denied("expiration", policy.ExpirationTooLong)},

		// reserved names; the node reporting one does not make it allowed.
		{name: "reserved_kubernetes", opts: []csrtest.Option{csrtest.DNSNames("kubernetes")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_kubernetes_default", opts: []csrtest.Option{csrtest.DNSNames("kubernetes.default")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_kubernetes_default_svc", opts: []csrtest.Option{csrtest.DNSNames("kubernetes.default.svc")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_kubernetes_default_svc_cluster_local", opts: []csrtest.Option{csrtest.DNSNames("kubernetes.default.svc.cluster.local")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_uppercase", opts: []csrtest.Option{csrtest.DNSNames("Kubernetes.Default.SVC")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_service_svc", opts: []csrtest.Option{csrtest.DNSNames("vault.vault.svc")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_service_fqdn", opts: []csrtest.Option{csrtest.DNSNames("vault.vault.svc.cluster.local")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_pod_name", opts: []csrtest.Option{csrtest.DNSNames("10-244-0-5.default.pod.cluster.local")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_pod_short_name", opts: []csrtest.Option{csrtest.DNSNames("10-244-0-5.default.pod")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_pod_suffix", opts: []csrtest.Option{csrtest.DNSNames("anything.pod")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_service_short_name", opts: []csrtest.Option{csrtest.DNSNames("vault.vault")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=vault.vault")
		}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_service_short_name_kube_system", opts: []csrtest.Option{csrtest.DNSNames("Kube-DNS.Kube-System")}, want: denied("reserved", policy.ReservedName)},
		// With a bootstrap token a node picks its own name: being its name does not make a
		// Service's name its own.
		{name: "own_name_is_service_short_name", opts: []csrtest.Option{csrtest.Node("kube-dns.kube-system"), csrtest.DNSNames("kube-dns.kube-system"), csrtest.IPAddresses("10.0.0.30")}, facts: func(f *fakeFacts) {
			f.nodes["kube-dns.kube-system"] = node("kube-dns.kube-system", "Hostname=kube-dns.kube-system", "InternalIP=10.0.0.30")
		}, want: denied("reserved", policy.ReservedName)},
		{name: "own_name_is_statefulset_pod_name", opts: []csrtest.Option{csrtest.Node("vault-0.vault-internal.vault"), csrtest.DNSNames("vault-0.vault-internal.vault")}, facts: func(f *fakeFacts) {
			f.nodes["vault-0.vault-internal.vault"] = node("vault-0.vault-internal.vault", "Hostname=vault-0.vault-internal.vault")
		}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_any_name_in_existing_namespace", opts: []csrtest.Option{csrtest.DNSNames("not-yet-a-service.default")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_statefulset_pod_name", opts: []csrtest.Option{csrtest.DNSNames("vault-0.vault-internal.vault")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_headless_pod_kube_system", opts: []csrtest.Option{csrtest.DNSNames("etcd-0.etcd.kube-system")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_svc_under_other_domain", opts: []csrtest.Option{csrtest.DNSNames("vault.vault.svc.k8s.internal")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_pod_under_other_domain", opts: []csrtest.Option{csrtest.DNSNames("10-244-0-5.default.pod.k8s.internal")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_metadata_name", opts: []csrtest.Option{csrtest.DNSNames("Metadata.Google.Internal")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_cluster_domain", opts: []csrtest.Option{csrtest.DNSNames("cluster.local")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_custom_cluster_domain", opts: []csrtest.Option{csrtest.DNSNames("kubernetes.default.svc.k8s.example")}, cfg: func(c *policy.Config) { c.ClusterDomain = "k8s.example" }, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_localhost", opts: []csrtest.Option{csrtest.DNSNames("localhost")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_sub_localhost", opts: []csrtest.Option{csrtest.DNSNames("node-a.localhost")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_extra_name", opts: []csrtest.Option{csrtest.DNSNames("node-a.example.com")}, cfg: func(c *policy.Config) { c.ExtraReservedNames = []string{"Node-A.Example.com"} }, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_name_reported_by_node", opts: []csrtest.Option{csrtest.DNSNames("node-a", "kubernetes.default.svc")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=kubernetes.default.svc")
		}, want: denied("reserved", policy.ReservedName)},

		// reserved addresses
		{name: "reserved_loopback_v4", opts: []csrtest.Option{csrtest.IPAddresses("127.0.0.1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_loopback_v4_range", opts: []csrtest.Option{csrtest.IPAddresses("127.1.2.3")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_loopback_v6", opts: []csrtest.Option{csrtest.IPAddresses("::1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_loopback_mapped", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, ipGN("::ffff:127.0.0.1")))}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_metadata_v4", opts: []csrtest.Option{csrtest.IPAddresses("169.254.169.254")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_metadata_v6", opts: []csrtest.Option{csrtest.IPAddresses("fd00:ec2::254")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_metadata_aws_dns_v6", opts: []csrtest.Option{csrtest.IPAddresses("fd00:ec2::253")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_metadata_aws_name", opts: []csrtest.Option{csrtest.DNSNames("instance-data.ec2.internal")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_metadata_aws_regional_name", opts: []csrtest.Option{csrtest.DNSNames("Instance-Data.us-west-2.compute.internal")}, want: denied("reserved", policy.ReservedName)},
		{name: "reserved_metadata_gcp_v6", opts: []csrtest.Option{csrtest.IPAddresses("fd20:ce::254")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_metadata_eks_pod_identity", opts: []csrtest.Option{csrtest.IPAddresses("fd00:ec2::23")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_metadata_alibaba", opts: []csrtest.Option{csrtest.IPAddresses("100.100.100.200")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_azure_wireserver", opts: []csrtest.Option{csrtest.IPAddresses("168.63.129.16")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_link_local_v4", opts: []csrtest.Option{csrtest.IPAddresses("169.254.1.1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_link_local_v6", opts: []csrtest.Option{csrtest.IPAddresses("fe80::1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_multicast_v4", opts: []csrtest.Option{csrtest.IPAddresses("224.0.0.1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_multicast_v6", opts: []csrtest.Option{csrtest.IPAddresses("ff05::1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_link_local_multicast_v6", opts: []csrtest.Option{csrtest.IPAddresses("ff02::1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_unspecified_v4", opts: []csrtest.Option{csrtest.IPAddresses("0.0.0.0")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_unspecified_v6", opts: []csrtest.Option{csrtest.IPAddresses("::")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_broadcast", opts: []csrtest.Option{csrtest.IPAddresses("255.255.255.255")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_api_server_v4", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "reserved_api_server_v6", opts: []csrtest.Option{csrtest.IPAddresses("fd00::1")}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "reserved_api_server_mapped_in_facts", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.2")}, facts: func(f *fakeFacts) {
			f.cluster.APIServerAddresses = append(f.cluster.APIServerAddresses, netip.MustParseAddr("::ffff:10.0.0.2"))
		}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "reserved_service_ip_v4", opts: []csrtest.Option{csrtest.IPAddresses("10.96.0.1")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_service_ip_v6", opts: []csrtest.Option{csrtest.IPAddresses("fd00:96::a")}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_service_ip_mapped_san", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, ipGN("::ffff:10.96.0.10")))}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_service_cidr_mapped_in_facts", opts: []csrtest.Option{csrtest.IPAddresses("10.112.0.1")}, facts: func(f *fakeFacts) {
			f.cluster.ServiceCIDRs = append(f.cluster.ServiceCIDRs, netip.MustParsePrefix("::ffff:10.112.0.0/108"))
		}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_extra_cidr", opts: []csrtest.Option{csrtest.IPAddresses("203.0.113.10")}, cfg: func(c *policy.Config) {
			c.ExtraReservedCIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
		}, want: denied("reserved", policy.ReservedAddress)},
		{name: "reserved_api_server_reported_by_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
		}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "reserved_api_server_reported_by_node_unsettled", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
		}, age: time.Second, want: held("apiserver", policy.ReservedAddress)},
		// A control-plane node's kubelet asks for its own IP, where its API server listens too.
		{name: "api_server_address_of_own_control_plane_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.10", "10.0.0.1")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.controlPlane("node-a")
		}, want: approved()},
		{name: "api_server_address_legacy_master_label", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.10", "10.0.0.1")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.nodes["node-a"].Labels = map[string]string{policy.LegacyControlPlaneLabel: "true"}
		}, want: approved()},
		{name: "api_server_address_control_plane_node_does_not_report", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, facts: func(f *fakeFacts) {
			f.controlPlane("node-a")
		}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "api_server_address_of_other_control_plane_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, facts: func(f *fakeFacts) {
			f.controlPlane("node-a")
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.controlPlane("node-b")
			f.addAddresses("node-b", "InternalIP=10.0.0.1")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "api_server_address_node_not_found", opts: []csrtest.Option{csrtest.Node("node-z"), csrtest.IPAddresses("10.0.0.1")}, want: held("apiserver", policy.NodeNotFound)},
		{name: "api_server_dns_literal_even_for_control_plane", opts: []csrtest.Option{csrtest.DNSNames("10.0.0.1")}, facts: func(f *fakeFacts) {
			f.controlPlane("node-a")
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
		}, want: denied("san-types", policy.DNSNameIsAddress)},
		{name: "service_ip_even_for_control_plane", opts: []csrtest.Option{csrtest.IPAddresses("10.96.0.1")}, facts: func(f *fakeFacts) {
			f.controlPlane("node-a")
			f.addAddresses("node-a", "InternalIP=10.96.0.1")
		}, want: denied("reserved", policy.ReservedAddress)},
		// The control-plane exemption lifts the API server rule only: an API server address that
		// is also a Service IP or in --reserved-cidrs stays refused, even to a control-plane node.
		{name: "api_server_address_in_service_cidr_even_for_control_plane", opts: []csrtest.Option{csrtest.IPAddresses("10.96.0.1")}, facts: func(f *fakeFacts) {
			f.cluster.APIServerAddresses = append(f.cluster.APIServerAddresses, netip.MustParseAddr("10.96.0.1"))
			f.controlPlane("node-a")
			f.addAddresses("node-a", "InternalIP=10.96.0.1")
		}, want: denied("reserved", policy.ReservedAddress)},
		{name: "api_server_address_in_reserved_cidr_even_for_control_plane", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, cfg: func(c *policy.Config) {
			c.ExtraReservedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/31")}
		}, facts: func(f *fakeFacts) {
			f.controlPlane("node-a")
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
		}, want: denied("reserved", policy.ReservedAddress)},
		{name: "api_server_address_metadata_even_for_control_plane", opts: []csrtest.Option{csrtest.IPAddresses("169.254.169.254")}, facts: func(f *fakeFacts) {
			f.cluster.APIServerAddresses = append(f.cluster.APIServerAddresses, netip.MustParseAddr("169.254.169.254"))
			f.controlPlane("node-a")
			f.addAddresses("node-a", "InternalIP=169.254.169.254")
		}, want: denied("reserved", policy.ReservedAddress)},
		// Names in the API server's certificate are its identity as much as its addresses.
		{name: "api_server_name", opts: []csrtest.Option{csrtest.DNSNames("api.k8s.example")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "ExternalDNS=api.k8s.example")
		}, want: denied("apiserver", policy.ReservedName)},
		{name: "api_server_name_uppercase", opts: []csrtest.Option{csrtest.DNSNames("API.K8s.Example")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "ExternalDNS=api.k8s.example")
		}, want: denied("apiserver", policy.ReservedName)},
		{name: "api_server_name_unsettled", opts: []csrtest.Option{csrtest.DNSNames("api.k8s.example")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "ExternalDNS=api.k8s.example")
		}, age: time.Second, want: held("apiserver", policy.ReservedName)},
		{name: "api_server_name_of_own_control_plane_node", opts: []csrtest.Option{csrtest.DNSNames("node-a")}, facts: func(f *fakeFacts) {
			f.cluster.APIServerNames = append(f.cluster.APIServerNames, "node-a")
			f.controlPlane("node-a")
		}, want: approved()},
		{name: "api_server_name_worker", opts: []csrtest.Option{csrtest.DNSNames("node-a")}, facts: func(f *fakeFacts) {
			f.cluster.APIServerNames = append(f.cluster.APIServerNames, "node-a")
		}, want: denied("apiserver", policy.ReservedName)},
		// Control-plane labels are configurable; a label a kubelet may set is refused by Validate.
		{name: "api_server_address_custom_control_plane_label", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, cfg: func(c *policy.Config) {
			c.ControlPlaneLabels = []string{"node-role.kubernetes.io/controlplane=true"}
		}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.nodes["node-a"].Labels = map[string]string{"node-role.kubernetes.io/controlplane": "true"}
		}, want: approved()},
		{name: "api_server_address_custom_control_plane_label_other_value", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, cfg: func(c *policy.Config) {
			c.ControlPlaneLabels = []string{"node-role.kubernetes.io/controlplane=true"}
		}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.nodes["node-a"].Labels = map[string]string{"node-role.kubernetes.io/controlplane": "false"}
		}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "api_server_address_default_labels_miss_rke", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.nodes["node-a"].Labels = map[string]string{"node-role.kubernetes.io/controlplane": "true"}
		}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "api_server_address_no_control_plane_labels", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.1")}, cfg: func(c *policy.Config) {
			c.ControlPlaneLabels = nil
		}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.1")
			f.controlPlane("node-a")
		}, want: denied("apiserver", policy.ReservedAddress)},
		{name: "loopback_reported_by_node", opts: []csrtest.Option{csrtest.IPAddresses("127.0.0.10")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=127.0.0.10")
		}, want: denied("reserved", policy.ReservedAddress)},
		{name: "loopback_insecure_allowed", opts: []csrtest.Option{csrtest.IPAddresses("127.0.0.10")}, cfg: func(c *policy.Config) { c.InsecureAllowLoopback = true }, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=127.0.0.10")
		}, want: approved()},
		{name: "loopback_insecure_still_denies_api_server", opts: []csrtest.Option{csrtest.IPAddresses("127.0.0.1")}, cfg: func(c *policy.Config) { c.InsecureAllowLoopback = true }, facts: func(f *fakeFacts) {
			f.cluster.APIServerAddresses = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			f.addAddresses("node-a", "InternalIP=127.0.0.1")
		}, want: denied("apiserver", policy.ReservedAddress)},

		// allowed-cidrs
		{name: "allowed_cidrs_inside", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.10", "fd00::10")}, cfg: func(c *policy.Config) {
			c.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")}
		}, want: approved()},
		{name: "allowed_cidrs_mapped_prefix", cfg: func(c *policy.Config) {
			c.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/120")}
		}, want: approved()},
		{name: "allowed_cidrs_outside", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.10", "203.0.113.10")}, cfg: func(c *policy.Config) {
			c.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
		}, want: denied("allowed-cidrs", policy.AddressNotAllowed)},
		{name: "allowed_cidrs_v4_only_rejects_v6", opts: []csrtest.Option{csrtest.IPAddresses("fd00::10")}, cfg: func(c *policy.Config) {
			c.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
		}, want: denied("allowed-cidrs", policy.AddressNotAllowed)},

		// dns-regex
		{name: "dns_regex_match", opts: []csrtest.Option{csrtest.DNSNames("NODE-A", "node-a.example.com")}, cfg: func(c *policy.Config) {
			c.DNSNameRegex = regexp.MustCompile(`^(?:node-[a-z]+(\.example\.com)?)$`)
		}, want: approved()},
		{name: "dns_regex_mismatch", opts: []csrtest.Option{csrtest.DNSNames("node-a", "node-a.internal.example")}, cfg: func(c *policy.Config) {
			c.DNSNameRegex = regexp.MustCompile(`^(?:node-[a-z]+(\.example\.com)?)$`)
		}, want: denied("dns-regex", policy.DNSNameNotAllowed)},
		{name: "dns_regex_unanchored_needs_full_match", opts: []csrtest.Option{csrtest.DNSNames("node-a.example.com")}, cfg: func(c *policy.Config) {
			c.DNSNameRegex = regexp.MustCompile(`node-a`)
		}, want: denied("dns-regex", policy.DNSNameNotAllowed)},

		// node-exists
		{name: "node_not_found", opts: []csrtest.Option{csrtest.Node("node-c"), csrtest.IPAddresses("10.0.0.12")}, want: held("node-exists", policy.NodeNotFound)},
		{name: "node_not_found_and_denied", opts: []csrtest.Option{csrtest.Node("node-c"), csrtest.Usages(ds, ca)}, want: denied("usages", policy.UsagesInvalid)},

		// san-ownership
		{name: "ip_not_on_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "ip_not_on_node_unsettled", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, age: 10 * time.Second, want: held("san-ownership", policy.SANNotOnNode)},
		{name: "ip_not_on_node_at_settle_time", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, age: time.Minute, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "ip_not_on_node_created_in_future", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, age: -time.Minute, want: held("san-ownership", policy.SANNotOnNode)},
		// A Node that registered after the request may not have reported its addresses yet
		// (a cloud controller adds them): the settle time runs from its registration.
		{name: "ip_not_on_node_registered_just_now", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, facts: func(f *fakeFacts) {
			f.nodes["node-a"].Created = csrtest.Created.Add(time.Hour - 10*time.Second)
		}, want: held("san-ownership", policy.SANNotOnNode)},
		{name: "ip_not_on_node_registered_a_settle_time_ago", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, facts: func(f *fakeFacts) {
			f.nodes["node-a"].Created = csrtest.Created.Add(time.Hour - time.Minute)
		}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "ip_not_on_node_no_settle_time", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, cfg: func(c *policy.Config) { c.AddressSettleTime = 0 }, age: time.Nanosecond, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "ipv6_not_on_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.10", "fd00::99")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "ip_of_other_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.11")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "dns_not_on_node", opts: []csrtest.Option{csrtest.DNSNames("node-a", "evil.example.com")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "dns_not_on_node_unsettled", opts: []csrtest.Option{csrtest.DNSNames("evil.example.com")}, age: 30 * time.Second, want: held("san-ownership", policy.SANNotOnNode)},
		{name: "dns_of_other_node", opts: []csrtest.Option{csrtest.DNSNames("node-b")}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "dns_san_is_node_ip", opts: []csrtest.Option{csrtest.DNSNames("10.0.0.10")}, want: denied("san-types", policy.DNSNameIsAddress)},
		// The kubelet turns a Hostname that is an IP into an IP SAN.
		{name: "ip_san_is_node_hostname", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.50")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "Hostname=10.0.0.50")
		}, want: approved()},
		{name: "ip_san_is_node_internal_dns", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.50")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=10.0.0.50")
		}, want: denied("san-ownership", policy.SANNotOnNode)},
		{name: "ip_shared_with_other_node", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.11")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.11")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "ip_shared_with_other_node_unsettled", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.11")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.11")
		}, age: time.Second, want: held("san-ownership", policy.SANOfOtherNode)},
		{name: "mapped_ip_shared_with_other_node", opts: []csrtest.Option{csrtest.Extensions(csrtest.SANExtension(t, ipGN("::ffff:10.0.0.11")))}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalIP=10.0.0.11")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "dns_shared_with_other_node", opts: []csrtest.Option{csrtest.DNSNames("shared.example.com")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "ExternalDNS=shared.example.com")
			f.addAddresses("node-b", "InternalDNS=Shared.Example.com.")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "dns_name_of_other_node_without_hostname", opts: []csrtest.Option{csrtest.DNSNames("node-b")}, facts: func(f *fakeFacts) {
			f.nodes["node-b"] = node("node-b", "InternalIP=10.0.0.11")
			f.addAddresses("node-a", "InternalDNS=node-b")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "dns_name_of_other_node_uppercase", opts: []csrtest.Option{csrtest.DNSNames("NODE-B")}, facts: func(f *fakeFacts) {
			f.nodes["node-b"] = node("node-b", "InternalIP=10.0.0.11")
			f.addAddresses("node-a", "InternalDNS=Node-B")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "dns_first_label_of_other_node", opts: []csrtest.Option{csrtest.DNSNames("node-b.example.com")}, facts: func(f *fakeFacts) {
			f.nodes["node-b"] = node("node-b", "InternalIP=10.0.0.11")
			f.addAddresses("node-a", "ExternalDNS=node-b.example.com")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "dns_name_of_other_fqdn_node", opts: []csrtest.Option{csrtest.DNSNames("node-c.example.com")}, facts: func(f *fakeFacts) {
			f.nodes["node-c.example.com"] = node("node-c.example.com", "InternalIP=10.0.0.12")
			f.addAddresses("node-a", "ExternalDNS=node-c.example.com")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "dns_name_of_other_node_unsettled", opts: []csrtest.Option{csrtest.DNSNames("node-b")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=node-b")
		}, age: time.Second, want: held("san-ownership", policy.SANOfOtherNode)},
		{name: "other_node_address_leading_zeros", facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=010.0.0.10")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "squatter_refused", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.10")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=10.0.0.10")
			f.claims["10.0.0.10"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-time.Hour)}
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "squatter_refused_alone", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.10")}, facts: func(f *fakeFacts) {
			f.nodes["node-a"] = node("node-a", "Hostname=node-a")
			f.addAddresses("node-b", "InternalIP=10.0.0.10")
			f.claims["10.0.0.10"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-time.Hour)}
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "squatter_of_name_refused", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.DNSNames("node-a.example.com"), csrtest.IPAddresses()}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "ExternalDNS=node-a.example.com")
			f.claims["node-a.example.com"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-time.Hour)}
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "claim_released_holds_new_holder", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.20")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=10.0.0.20")
			f.claims["10.0.0.20"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-24 * time.Hour), Released: csrtest.Created.Add(time.Hour - 10*time.Second)}
		}, want: held("san-ownership", policy.SANOfOtherNode)},
		// A SAN on its way to the requester does not delay the denial of one another Node owns.
		{name: "claim_released_does_not_mask_owned_address", opts: []csrtest.Option{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.20", "10.0.0.30")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-b", "InternalIP=10.0.0.20", "InternalIP=10.0.0.30")
			f.claims["10.0.0.20"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-24 * time.Hour), Released: csrtest.Created.Add(time.Hour - 10*time.Second)}
			f.claims["10.0.0.30"] = policy.Claim{Node: "node-a", Since: csrtest.Created.Add(-24 * time.Hour)}
		}, want: denied("san-ownership", policy.SANOfOtherNode)},

		// Short names: with FQDN node names (EKS), a SAN whose first label is another Node's
		// short name is that Node's; a Node's own full name is its own even where short names
		// collide, and no claim can take it.
		{name: "short_name_of_fqdn_node", opts: []csrtest.Option{csrtest.DNSNames("ip-10-0-0-22")}, facts: func(f *fakeFacts) {
			f.nodes["ip-10-0-0-22.ec2.internal"] = node("ip-10-0-0-22.ec2.internal", "InternalIP=10.0.0.22")
			f.addAddresses("node-a", "InternalDNS=ip-10-0-0-22")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "fqdn_of_short_named_node", opts: []csrtest.Option{csrtest.DNSNames("node-b.corp.example")}, facts: func(f *fakeFacts) {
			f.addAddresses("node-a", "InternalDNS=node-b.corp.example")
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		// Sharing a first label is no claim on each other's names, or any new Node could deny
		// its namesakes' aliases: the address rules judge such a name.
		{name: "name_sharing_first_label_with_other_node", opts: []csrtest.Option{csrtest.DNSNames("ip-10-0-0-22.us-west-2.compute.internal")}, facts: func(f *fakeFacts) {
			f.nodes["ip-10-0-0-22.ec2.internal"] = node("ip-10-0-0-22.ec2.internal", "InternalIP=10.0.0.22")
			f.addAddresses("node-a", "InternalDNS=ip-10-0-0-22.us-west-2.compute.internal")
		}, want: approved()},
		{name: "own_alias_beside_namesake_in_other_domain", opts: []csrtest.Option{csrtest.Node("web1.dc2"), csrtest.DNSNames("web1.dc2", "web1.dc2.example.com"), csrtest.IPAddresses("10.0.2.1")}, facts: func(f *fakeFacts) {
			f.nodes["web1.dc1"] = node("web1.dc1", "Hostname=web1.dc1", "InternalIP=10.0.1.1")
			f.nodes["web1.dc2"] = node("web1.dc2", "Hostname=web1.dc2", "InternalDNS=web1.dc2.example.com", "InternalIP=10.0.2.1")
		}, want: approved()},
		// A Node named like an IP has no say over that address: it is an address key.
		{name: "node_named_like_owned_ip", opts: []csrtest.Option{csrtest.Node("10.0.0.11"), csrtest.DNSNames(), csrtest.IPAddresses("10.0.0.11")}, facts: func(f *fakeFacts) {
			f.nodes["10.0.0.11"] = node("10.0.0.11", "InternalIP=10.0.0.11")
			f.claims["10.0.0.11"] = policy.Claim{Node: "node-b", Since: csrtest.Created.Add(-24 * time.Hour)}
		}, want: denied("san-ownership", policy.SANOfOtherNode)},
		{name: "own_fqdn_name_beside_short_named_node", opts: []csrtest.Option{csrtest.Node("ip-10-0-0-22.ec2.internal"), csrtest.IPAddresses("10.0.0.22")}, facts: func(f *fakeFacts) {
			f.nodes["ip-10-0-0-22.ec2.internal"] = node("ip-10-0-0-22.ec2.internal", "Hostname=ip-10-0-0-22.ec2.internal", "InternalIP=10.0.0.22")
			f.nodes["ip-10-0-0-22"] = node("ip-10-0-0-22", "InternalIP=10.0.0.99")
		}, want: approved()},
		{name: "own_name_claimed_by_another_before_it_joined", opts: []csrtest.Option{csrtest.Node("node-c"), csrtest.IPAddresses("10.0.0.12")}, facts: func(f *fakeFacts) {
			f.nodes["node-c"] = node("node-c", "Hostname=node-c", "InternalIP=10.0.0.12")
			f.addAddresses("node-b", "Hostname=node-c")
			f.claims["node-c"] = policy.Claim{Node: "node-b", Since: csrtest.Created.Add(-24 * time.Hour)}
		}, want: approved()},

		// The first deny wins, over holds and over later denies.
		{name: "first_deny_wins", opts: []csrtest.Option{csrtest.CommonName("system:node:node-b"), csrtest.IPAddresses("127.0.0.1")}, want: denied("subject", policy.SubjectMismatch)},
		{name: "deny_wins_over_hold", opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, facts: func(f *fakeFacts) {
			f.cluster.ServiceCIDRs = nil
		}, age: time.Second, cfg: func(c *policy.Config) {
			c.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}
		}, want: denied("allowed-cidrs", policy.AddressNotAllowed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := servingcsr.FromCSR(csrtest.New(t, tt.opts...))
			if tt.req != nil {
				tt.req(&req)
			}
			cfg := policy.DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			facts := defaultFacts()
			if tt.facts != nil {
				tt.facts(facts)
			}
			age := tt.age
			if age == 0 {
				age = time.Hour
			}

			got, err := policy.Evaluate(context.Background(), cfg, req, facts, req.Created.Add(age))
			if err != nil {
				t.Fatalf("Evaluate() error = %v", err)
			}
			if diff := cmp.Diff(decidedBy(got), tt.want); diff != "" {
				t.Errorf("Evaluate() mismatch (-got +want):\n%s\nmessage: %s", diff, got.Message)
			}
			if len(got.Checks) != 14 {
				t.Errorf("Evaluate() ran %d checks, want 14", len(got.Checks))
			}
			if !strings.HasPrefix(got.Message, tt.want.Check+": ") && got.Verdict != policy.Approve {
				t.Errorf("Evaluate() message %q does not name check %q", got.Message, tt.want.Check)
			}
			for _, c := range got.Checks {
				if strings.Contains(c.Message, "-----") || strings.Contains(c.Message, "MII") {
					t.Errorf("check %s message %q looks like PEM data", c.Check, c.Message)
				}
			}
		})
	}
}
