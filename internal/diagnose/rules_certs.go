package diagnose

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/severity"
)

// certExpired: kubelets serve (or were last issued) an expired certificate.
func (v *view) certExpired() *Finding {
	f := &Finding{Severity: severity.Critical}
	for _, n := range v.nodeNames {
		cert, source, _ := v.servingCert(n)
		if cert == nil || cert.NotAfter.After(v.Now) {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate (%s) issued by %s expired %s ago (%s)", n, sourceText(source), issuerName(cert), human.Duration(v.Now.Sub(cert.NotAfter)), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s expired", plural(len(f.Nodes), "kubelet serving certificate"))
	f.Fix = []string{
		"A kubelet with rotation on serves no certificate once its own expired; one that serves an expired certificate has a static or self-signed one (--tls-cert-file) or rotation off: renew it, or turn rotation on together with an approver.",
		"Where the certificate comes from issued CSRs, the kubelet got no newer one approved: see the pending and denied CSR findings. " + v.kubeletLogFix(f.Nodes),
	}
	if len(v.approving()) == 0 {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	return f
}

// certExpiring: certificates the kubelet should have rotated already.
// Critical when one has less than a day left, warning otherwise.
func (v *view) certExpiring() *Finding {
	f := &Finding{Severity: severity.Warning}
	for _, n := range v.nodeNames {
		cert, source, _ := v.servingCert(n)
		if cert == nil || !expiring(cert, v.Now) {
			continue
		}
		left := cert.NotAfter.Sub(v.Now)
		if left < expiryCritical {
			f.Severity = severity.Critical
		}
		f.Nodes = append(f.Nodes, n)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate (%s) issued by %s expires in %s (%s), %s of its lifetime left", n, sourceText(source), issuerName(cert), human.Duration(left), cert.NotAfter.UTC().Format(time.RFC3339), percent(left, cert.NotAfter.Sub(cert.NotBefore))))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s expiring without having been rotated", plural(len(f.Nodes), "kubelet serving certificate"))
	f.Fix = []string{
		"A kubelet rotates at 70-90% of its certificate's lifetime: these did not get a new one. Look for their pending or denied CSRs above. " + v.kubeletLogFix(f.Nodes),
	}
	if len(v.approving()) == 0 {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	return f
}

// certSANMismatch: a served certificate's SANs differ from the Node's addresses.
func (v *view) certSANMismatch() *Finding {
	f := &Finding{Severity: severity.Warning}
	extra := false
	for _, n := range v.nodeNames {
		r, ok := v.probe(n)
		if !ok || r.Cert == nil || r.SANsMatch || r.State == metrics.ProbeSelfSigned {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		var parts []string
		if len(r.Missing) > 0 {
			parts = append(parts, "missing "+strings.Join(r.Missing, ", "))
		}
		if len(r.Extra) > 0 {
			extra = true
			parts = append(parts, "extra "+strings.Join(r.Extra, ", "))
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate SANs differ from the Node's addresses: %s", n, strings.Join(parts, "; ")))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = "1 kubelet serving certificate has SANs that do not match its Node's addresses"
	if len(f.Nodes) > 1 {
		f.Title = fmt.Sprintf("%d kubelet serving certificates have SANs that do not match their Nodes' addresses", len(f.Nodes))
	}
	if extra {
		f.Fix = append(f.Fix, "Extra SANs are names or addresses the Node does not report: an approver that does not check SANs against the Node signed them (csrguard denies them as SANNotOnNode). Find out who approved the certificate and treat the node as suspect until explained.")
	}
	f.Fix = append(f.Fix,
		"Missing SANs: the Node's addresses changed after the certificate was issued. The kubelet requests a new certificate for its current addresses; if the mismatch stays, that CSR is pending or denied (see above).",
		"Clients that verify kubelets (kube-apiserver with --kubelet-certificate-authority, metrics-server) reject a certificate without the address they dial.",
	)
	return f
}

// certUntrusted: the served certificate does not chain to the CA the probe was given.
func (v *view) certUntrusted() *Finding {
	f := &Finding{Severity: severity.Warning}
	for _, n := range v.nodeNames {
		r, ok := v.probe(n)
		if !ok || (r.State != metrics.ProbeUntrusted && r.State != metrics.ProbeSelfSigned) {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		issuer := "?"
		if r.Cert != nil {
			issuer = issuerName(r.Cert)
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: certificate issued by %s: %v", n, issuer, r.Err))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s not signed by the kubelet-serving CA given", plural(len(f.Nodes), "kubelet serving certificate"))
	f.Fix = []string{
		"A self-signed issuer (<hostname>-ca@<timestamp>) means rotation is off on that kubelet: turn on serverTLSBootstrap" + talosRotationHint(v.talos) + " together with an approver.",
		"Otherwise check the CA bundle given to the probe: it must hold the CA kube-controller-manager signs kubelet-serving certificates with.",
	}
	return f
}

// sharedCA: kubelet serving certificates signed by a CA every pod trusts.
func (v *view) sharedCA() *Finding {
	if len(v.PodTrustedCAs) == 0 {
		return nil
	}
	f := &Finding{Severity: severity.Warning}
	for _, n := range v.nodeNames {
		seen := map[string]bool{}
		for _, c := range v.certsOf(n) {
			for _, ca := range v.PodTrustedCAs {
				if c.cert.CheckSignatureFrom(ca) != nil {
					continue
				}
				key := c.source + "|" + ca.Subject.String()
				if seen[key] {
					continue
				}
				seen[key] = true
				if !slices.Contains(f.Nodes, n) {
					f.Nodes = append(f.Nodes, n)
				}
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate (%s) is signed by %s, which kube-system/kube-root-ca.crt gives every pod to trust", n, sourceText(c.source), ca.Subject.String()))
			}
		}
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = "Kubelet serving certificates are signed by the CA pods trust for the API server: a wrongly approved CSR lets a node impersonate the API server"
	f.Fix = []string{
		"Sign kubelet-serving certificates with a dedicated CA: kube-controller-manager --cluster-signing-kubelet-serving-cert-file and --cluster-signing-kubelet-serving-key-file (once one per-signer pair is set, give every signer in use its own pair instead of --cluster-signing-cert-file).",
		"Have kube-apiserver verify kubelets against that CA: --kubelet-certificate-authority=<dedicated CA>; likewise metrics-server --kubelet-certificate-authority.",
		"Until then, approve kubelet-serving CSRs only with SAN ownership checks: csrguard denies kubernetes.default.svc, Service IPs and API server addresses.",
	}
	if v.talos {
		f.Fix = append(f.Fix, "On Talos these flags go in cluster.controllerManager.extraArgs and cluster.apiServer.extraArgs, with the CA files mounted through their extraVolumes.")
	}
	return f
}

// sourcedCert is a certificate and where it was seen: "probe" or "csr".
type sourcedCert struct {
	cert   *x509.Certificate
	source string
}

// certsOf returns node's probed and issued certificates.
func (v *view) certsOf(node string) []sourcedCert {
	var out []sourcedCert
	if r, ok := v.probe(node); ok && r.Cert != nil {
		out = append(out, sourcedCert{r.Cert, "probe"})
	}
	if c := v.issued[node]; c != nil && (len(out) == 0 || !c.Equal(out[0].cert)) {
		out = append(out, sourcedCert{c, "csr"})
	}
	return out
}

// sourceText says where a sourcedCert was seen, for evidence.
func sourceText(source string) string {
	switch source {
	case "probe":
		return "served, per probe"
	case "csr":
		return "newest issued CSR"
	}
	return source
}

// percent is part as a share of whole: "12.5%", or "?" for no whole.
func percent(part, whole time.Duration) string {
	if whole <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// talosRotationHint is where Talos turns on serving-certificate rotation,
// to append to the generic advice on Talos; "" elsewhere.
func talosRotationHint(talos bool) string {
	if talos {
		return " (Talos: rotate-server-certificates: true in machine.kubelet.extraArgs, or the KubeletConfig document's extraArgs on 1.14+)"
	}
	return ""
}
