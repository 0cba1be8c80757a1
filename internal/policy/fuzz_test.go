package policy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	netutils "k8s.io/utils/net"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func FuzzEvaluate(f *testing.F) {
	seeds := [][]csrtest.Option{
		nil,
		{csrtest.Key(csrtest.ECDSAP384), csrtest.IPAddresses("10.0.0.10", "fd00::10")},
		{csrtest.Key(csrtest.Ed25519), csrtest.DNSNames("node-a", "node-a.example.com")},
		{csrtest.Key(csrtest.RSA2048), csrtest.Usages(ke, ds, sa)},
		{csrtest.Key(csrtest.ECDSAP224)},
		{csrtest.DNSNames("kubernetes.default.svc"), csrtest.IPAddresses("10.96.0.1")},
		{csrtest.Extensions(csrtest.SANExtension(f, dnsGN("NODE-A"), ipGN("::ffff:10.0.0.10")))},
		{csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.11")},
		{csrtest.IPAddresses("10.0.0.11")},
		{csrtest.Emails("a@node-a")},
	}
	for _, opts := range seeds {
		csr := csrtest.New(f, opts...)
		var usages []string
		for _, u := range csr.Spec.Usages {
			usages = append(usages, string(u))
		}
		f.Add(csr.Spec.Request, csr.Spec.Username, strings.Join(csr.Spec.Groups, ","), strings.Join(usages, ","), int32(0))
	}
	f.Add([]byte("garbage"), "system:node:node-a", "system:nodes,system:authenticated", "digital signature,server auth", int32(3600))

	f.Fuzz(func(t *testing.T, pemBytes []byte, username, groups, usages string, expiration int32) {
		req := servingcsr.Request{
			Name:       "fuzz",
			SignerName: servingcsr.SignerName,
			Username:   username,
			Groups:     strings.Split(groups, ","),
			PEM:        pemBytes,
			Created:    csrtest.Created,
		}
		for u := range strings.SplitSeq(usages, ",") {
			req.Usages = append(req.Usages, certificatesv1.KeyUsage(u))
		}
		if expiration != 0 {
			req.ExpirationSeconds = &expiration
		}
		facts := defaultFacts()
		d, err := policy.Evaluate(context.Background(), policy.DefaultConfig(), req, facts, req.Created.Add(time.Hour))
		if err != nil {
			t.Fatalf("Evaluate() error = %v", err)
		}
		if d.Verdict != policy.Approve && d.Verdict != policy.Deny && d.Verdict != policy.Hold {
			t.Fatalf("Evaluate() verdict = %v", d.Verdict)
		}
		if d.Verdict == policy.Approve {
			if err := verifyApproved(req, facts); err != nil {
				t.Fatalf("Evaluate() approved a request the strict re-check rejects: %v", err)
			}
		}
	})
}

// FuzzEvaluateFromAPI is FuzzEvaluate for the requests the controller reads from the API server
// (servingcsr.FromAPI), whose signature the policy does not verify again: a node can sign any
// bytes it likes, so the policy faces arbitrary well-formed DER, which FuzzEvaluate rarely reaches
// past the signature check. The DER is fuzzed, wrapped in one PEM block.
func FuzzEvaluateFromAPI(f *testing.F) {
	for _, opts := range [][]csrtest.Option{
		nil,
		{csrtest.Key(csrtest.Ed25519), csrtest.DNSNames("node-a", "node-a.example.com")},
		{csrtest.Key(csrtest.RSA2048), csrtest.IPAddresses("10.0.0.10", "fd00::10")},
		{csrtest.Extensions(csrtest.SANExtension(f, dnsGN("NODE-A"), ipGN("::ffff:10.0.0.10")))},
		{csrtest.DNSNames("kubernetes.default.svc"), csrtest.IPAddresses("10.96.0.1")},
	} {
		block, _ := pem.Decode(csrtest.New(f, opts...).Spec.Request)
		f.Add(block.Bytes)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		req := servingcsr.FromCSR(csrtest.New(t, csrtest.PEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))))
		req.SignatureChecked = true
		facts := defaultFacts()
		d, err := policy.Evaluate(context.Background(), policy.DefaultConfig(), req, facts, req.Created.Add(time.Hour))
		if err != nil {
			t.Fatalf("Evaluate() error = %v", err)
		}
		if d.Verdict == policy.Approve {
			if err := verifyApproved(req, facts); err != nil {
				t.Fatalf("Evaluate() approved a request the strict re-check rejects: %v", err)
			}
		}
	})
}

// verifyApproved re-checks an approved request from scratch, sharing no code with the policy, for
// the default configuration and defaultFacts. It verifies the signature unless req says the API
// server did.
func verifyApproved(req servingcsr.Request, facts *fakeFacts) error {
	trimmed := bytes.TrimSpace(req.PEM)
	block, rest := pem.Decode(trimmed)
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(block.Headers) > 0 || len(rest) > 0 || !bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		return errors.New("not exactly one bare CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return err
	}
	if !req.SignatureChecked {
		if err := csr.CheckSignature(); err != nil {
			return err
		}
	}

	nodeName, ok := strings.CutPrefix(req.Username, "system:node:")
	node := facts.nodes[nodeName]
	if !ok || node == nil {
		return fmt.Errorf("username %q is not a known node", req.Username)
	}
	if !slices.Contains(req.Groups, "system:nodes") || !slices.Contains(req.Groups, "system:authenticated") {
		return fmt.Errorf("groups %q", req.Groups)
	}
	if csr.Subject.CommonName != req.Username || !slices.Equal(csr.Subject.Organization, []string{"system:nodes"}) || len(csr.Subject.Names) != 2 {
		return fmt.Errorf("subject %v", csr.Subject)
	}

	if req.ExpirationSeconds != nil && *req.ExpirationSeconds > 365*24*3600 {
		return fmt.Errorf("expirationSeconds %d", *req.ExpirationSeconds)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if name := k.Curve.Params().Name; name != "P-256" && name != "P-384" {
			return fmt.Errorf("curve %s", name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA %d bits", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key %T", k)
	}
	gotUsages := slices.Sorted(slices.Values(req.Usages))
	okUsages := slices.Equal(gotUsages, []certificatesv1.KeyUsage{ds, sa}) ||
		slices.Equal(gotUsages, []certificatesv1.KeyUsage{ds, ke, sa})
	if !okUsages {
		return fmt.Errorf("usages %q", req.Usages)
	}

	if len(csr.EmailAddresses)+len(csr.URIs) > 0 || len(csr.DNSNames)+len(csr.IPAddresses) == 0 {
		return errors.New("SAN types")
	}
	for _, ext := range csr.Extensions {
		if ext.Id.String() != "2.5.29.17" {
			return fmt.Errorf("extension %v", ext.Id)
		}
	}
	var nodeNames []string
	var nodeIPs []net.IP
	for _, a := range node.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			nodeNames = append(nodeNames, strings.ToLower(a.Address))
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			nodeIPs = append(nodeIPs, net.ParseIP(a.Address))
		}
	}
	for _, name := range csr.DNSNames {
		lower := strings.ToLower(name)
		if strings.ContainsAny(lower, "*") || strings.HasSuffix(lower, ".") || !slices.Contains(nodeNames, lower) {
			return fmt.Errorf("DNS SAN %q", name)
		}
		if lower == "localhost" || strings.HasPrefix(lower, "kubernetes") || strings.HasSuffix(lower, ".svc") || strings.HasSuffix(lower, ".pod") || strings.HasSuffix(lower, "cluster.local") {
			return fmt.Errorf("reserved DNS SAN %q", name)
		}
		labels := strings.Split(lower, ".")
		if len(labels) == 2 && slices.Contains(facts.namespaces, labels[1]) {
			return fmt.Errorf("DNS SAN %q is <service>.<namespace>", name)
		}
		if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x") {
			return fmt.Errorf("DNS SAN %q reads as an IP", name)
		}
		if slices.Contains(facts.cluster.APIServerNames, lower) {
			return fmt.Errorf("DNS SAN %q is the API server's", name)
		}
		for other := range facts.nodes {
			if other != nodeName && (other == lower || other == labels[0]) {
				return fmt.Errorf("DNS SAN %q is named after node %s", name, other)
			}
		}
		for other, n := range facts.nodes {
			for _, a := range n.Addresses {
				if other != nodeName && strings.EqualFold(a.Address, lower) {
					return fmt.Errorf("DNS SAN %q of node %s", name, other)
				}
			}
		}
	}
	_, services, _ := net.ParseCIDR("10.96.0.0/12")
	for _, ip := range csr.IPAddresses {
		if !slices.ContainsFunc(nodeIPs, ip.Equal) {
			return fmt.Errorf("IP SAN %v not on node", ip)
		}
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() || services.Contains(ip) ||
			slices.ContainsFunc(facts.cluster.APIServerAddresses, func(a netip.Addr) bool { return ip.Equal(a.AsSlice()) }) {
			return fmt.Errorf("reserved IP SAN %v", ip)
		}
		for other, n := range facts.nodes {
			for _, a := range n.Addresses {
				if other != nodeName && ip.Equal(net.ParseIP(a.Address)) {
					return fmt.Errorf("IP SAN %v of node %s", ip, other)
				}
			}
		}
	}
	return nil
}

// FuzzNodeAddress checks that Node addresses are read as the kubelet reads them
// (ParseIPSloppy), and that a victim's address, however it is spelled in its status, is never
// approved to another node.
func FuzzNodeAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.10", "010.000.000.010", "::ffff:10.0.0.10", "FD00::10", "fd00:0::10", "fe80::1%eth0", "0x0a.0.0.1", "10.1", "Node-A.", "203.0.113.7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip := netutils.ParseIPSloppy(s)
		got, ok := policy.ParseNodeIP(s)
		if ok != (ip != nil) {
			t.Fatalf("ParseNodeIP(%q) ok = %v, ParseIPSloppy = %v", s, ok, ip)
		}
		key := policy.AddressKey(s)
		if !ok {
			// DNS folds ASCII case only: "\u0130" is not "i", nor "\u212a" "k".
			lower := strings.Map(func(r rune) rune {
				if 'A' <= r && r <= 'Z' {
					return r + ('a' - 'A')
				}
				return r
			}, s)
			if key != policy.AddressKey(lower) {
				t.Fatalf("AddressKey(%q) = %q depends on ASCII case", s, key)
			}
			for _, r := range key {
				if r > unicode.MaxASCII {
					t.Fatalf("AddressKey(%q) = %q is not ASCII", s, key)
				}
			}
			return
		}
		want, _ := netip.AddrFromSlice(ip)
		want = want.Unmap()
		if got != want || key != want.String() || policy.AddressKey(want.String()) != key {
			t.Fatalf("ParseNodeIP(%q) = %v, AddressKey = %q; want %v under one key", s, got, key, want)
		}
		// node-b reports the address as s, node-a as the kubelet writes it into its IP SAN.
		facts := defaultFacts()
		facts.nodes["node-a"] = node("node-a", "InternalIP="+want.String())
		facts.nodes["node-b"] = node("node-b", "InternalIP="+s)
		req := servingcsr.FromCSR(csrtest.New(t, csrtest.DNSNames(), csrtest.IPAddresses(want.String())))
		d, err := policy.Evaluate(context.Background(), policy.DefaultConfig(), req, facts, req.Created.Add(time.Hour))
		if err != nil {
			t.Fatalf("Evaluate() error = %v", err)
		}
		if d.Verdict == policy.Approve {
			t.Fatalf("node-a got %v approved while node-b reports it as %q", want, s)
		}
	})
}
