package servingcsr

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"maps"
	"net"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	netutils "k8s.io/utils/net"
)

// KubeletTemplate returns the serving CSR template a kubelet with rotation on builds for a
// Node with these status.addresses, exactly as pkg/kubelet/certificate does (newGetTemplateFn
// and addressesToHostnamesAndIPs): CN system:node:<name>, O system:nodes; a Hostname that
// parses as an IP (k8s.io/utils/net.ParseIPSloppy, leading zeros allowed) and every InternalIP
// and ExternalIP that parses become IP SANs, other Hostnames and every InternalDNS and
// ExternalDNS become DNS SANs, each as written; duplicates are dropped by their text, names are
// sorted, IPs sorted by their canonical text. It returns nil when there is no IP: the kubelet
// then files no CSR.
//
// csrguard's simulated kubelets, preflight and the monitor's expected SANs all use it; an e2e
// test compares its result with the CSR the real kubelet sends, so it cannot drift.
func KubeletTemplate(nodeName string, addrs []corev1.NodeAddress) *x509.CertificateRequest {
	seenNames, seenIPs := map[string]bool{}, map[string]bool{}
	for _, a := range addrs {
		if a.Address == "" {
			continue
		}
		switch a.Type {
		case corev1.NodeHostName:
			if netutils.ParseIPSloppy(a.Address) != nil {
				seenIPs[a.Address] = true
			} else {
				seenNames[a.Address] = true
			}
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if netutils.ParseIPSloppy(a.Address) != nil {
				seenIPs[a.Address] = true
			}
		case corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			seenNames[a.Address] = true
		}
	}
	if len(seenIPs) == 0 {
		return nil
	}
	ips := make([]net.IP, 0, len(seenIPs))
	for s := range seenIPs {
		ips = append(ips, netutils.ParseIPSloppy(s))
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].String() < ips[j].String() })
	return &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: nodeUserPrefix + nodeName, Organization: []string{"system:nodes"}},
		DNSNames:    slices.Sorted(maps.Keys(seenNames)),
		IPAddresses: ips,
	}
}
