package diagnose

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// The times the findings rest on.
const (
	// pendingGrace is how long a CSR may be pending before it counts as
	// stuck: an approver decides within seconds.
	pendingGrace = 5 * time.Minute
	// approvedGrace is how long the signer may take to issue an approved CSR,
	// as for the csrguard_approved_unissued_csrs metric.
	approvedGrace = servingcsr.IssueGrace
	// gcWarnAge is the pending age from which csrcleaner's deletion at 24h
	// is near.
	gcWarnAge = 20 * time.Hour
	// expiryWarning and expiryCritical bound the residual validity of a
	// serving certificate that should have been rotated already.
	expiryWarning  = 7 * 24 * time.Hour
	expiryCritical = 24 * time.Hour
)

// csrView is one kubelet-serving CSR as the findings read it.
type csrView struct {
	csr   *certificatesv1.CertificateSigningRequest
	name  string
	node  string // "" when the username names no node
	user  string
	state string // servingcsr.StateOf
	age   time.Duration
}

// who is the node, or the username when it names no node.
func (c csrView) who() string {
	if c.node != "" {
		return c.node
	}
	return c.user
}

// view is a Snapshot indexed for the checks.
type view struct {
	Snapshot
	talos bool
	// probed is true when probe results can be used.
	probed    bool
	nodes     map[string]*corev1.Node
	nodeNames []string
	// csrs is sorted by who, then creation, then name.
	csrs    []csrView
	pending map[string][]csrView // by who
	last    map[string]csrView   // newest CSR by node
	// superseded are the pending CSRs that are not their node's live one
	// (servingcsr.Supersede), by name.
	superseded map[string]servingcsr.Supersession
	issued     map[string]*x509.Certificate
}

func newView(s Snapshot) *view {
	v := &view{Snapshot: s, nodes: map[string]*corev1.Node{}, pending: map[string][]csrView{}, last: map[string]csrView{}}
	v.probed = s.Probes != nil
	for i := range s.Nodes {
		n := &s.Nodes[i]
		v.nodes[n.Name] = n
		v.nodeNames = append(v.nodeNames, n.Name)
		if strings.Contains(n.Status.NodeInfo.OSImage, "Talos") {
			v.talos = true
		}
	}
	sort.Strings(v.nodeNames)
	for i := range s.CSRs {
		csr := &s.CSRs[i]
		if !servingcsr.InScope(csr) {
			continue
		}
		c := csrView{csr: csr, name: csr.Name, user: csr.Spec.Username, state: string(servingcsr.StateOf(csr)), age: s.Now.Sub(csr.CreationTimestamp.Time)}
		c.node, _ = servingcsr.NodeName(csr.Spec.Username)
		v.csrs = append(v.csrs, c)
	}
	sort.SliceStable(v.csrs, func(i, j int) bool {
		a, b := v.csrs[i], v.csrs[j]
		if a.who() != b.who() {
			return a.who() < b.who()
		}
		if !a.csr.CreationTimestamp.Equal(&b.csr.CreationTimestamp) {
			return a.csr.CreationTimestamp.Before(&b.csr.CreationTimestamp)
		}
		return a.name < b.name
	})
	for _, c := range v.csrs {
		if c.state == "Pending" {
			v.pending[c.who()] = append(v.pending[c.who()], c)
		}
		if c.node != "" {
			v.last[c.node] = c
		}
	}
	v.issued = monitor.Issued(s.CSRs)
	v.superseded = servingcsr.SupersedeApprovable(s.CSRs, func(csr *certificatesv1.CertificateSigningRequest) bool {
		d, ok := s.Decisions[csr.Name]
		return !ok || d.Verdict == policy.Approve
	})
	return v
}

// waited is how long who has been waiting for a certificate: the age of its oldest pending CSR
// not superseded by a newer approved or issued one (zero when there is none).
func (v *view) waited(who string) time.Duration {
	for _, c := range v.pending[who] {
		if !v.superseded[c.name].Final {
			return c.age
		}
	}
	return 0
}

// approving returns the approvers that run and approve.
func (v *view) approving() []Approver {
	var out []Approver
	for _, a := range v.Approvers {
		if a.approves() {
			out = append(out, a)
		}
	}
	return out
}

// probe returns the usable probe result of node.
func (v *view) probe(node string) (monitor.Result, bool) {
	if !v.probed {
		return monitor.Result{}, false
	}
	r, ok := v.Probes[node]
	return r, ok
}

// probeReached reports whether r got a TLS verdict from the kubelet.
func probeReached(r monitor.Result) bool {
	switch r.State {
	case metrics.ProbeTimeout, metrics.ProbeRefused, metrics.ProbeOther:
		return false
	}
	return true
}

// servingCert returns the best-known serving certificate of node: the one
// the probe saw, else the newest issued one in the CSRs. noCert is true when
// the probe found the kubelet serving none.
func (v *view) servingCert(node string) (cert *x509.Certificate, source string, noCert bool) {
	if r, ok := v.probe(node); ok && probeReached(r) {
		if r.State == metrics.ProbeNoServingCertificate || r.Cert == nil {
			return nil, "probe", true
		}
		return r.Cert, "probe", false
	}
	if c := v.issued[node]; c != nil {
		return c, "csr", false
	}
	return nil, "", false
}

// lacksCert reports whether node is known to have no valid serving
// certificate, and why: per the probe, or per the issued CSRs when the
// kubelet was not reached.
func (v *view) lacksCert(node string) (bool, string) {
	cert, source, noCert := v.servingCert(node)
	switch {
	case noCert:
		return true, "its kubelet serves no certificate (probe: tls: internal error)"
	case cert != nil && !cert.NotAfter.After(v.Now):
		return true, fmt.Sprintf("its serving certificate (%s) expired %s ago", source, human.Duration(v.Now.Sub(cert.NotAfter)))
	case cert == nil:
		return true, "no issued serving certificate for it in the API (issued CSRs are deleted after 1h; probe to be sure)"
	}
	return false, ""
}

// controlPlaneAddresses returns the InternalIPs of control-plane nodes, for
// talosctl commands.
func (v *view) controlPlaneAddresses() []string {
	var out []string
	for _, name := range v.nodeNames {
		n := v.nodes[name]
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; !ok {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				if ip, err := netip.ParseAddr(a.Address); err == nil {
					out = append(out, ip.String())
					break
				}
			}
		}
	}
	return out
}

// nodeAddress returns node's InternalIP, or its name.
func (v *view) nodeAddress(node string) string {
	if n := v.nodes[node]; n != nil {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address
			}
		}
	}
	return node
}

// expiring reports whether cert, valid at now, is close enough to its end
// that the kubelet should have rotated it already: under 7 days and under a
// tenth of its lifetime left (kubelets rotate at 70-90% of the lifetime, so
// short-lived certificates are not flagged while rotation is still due).
func expiring(cert *x509.Certificate, now time.Time) bool {
	left := cert.NotAfter.Sub(now)
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	return left > 0 && left < min(expiryWarning, lifetime/10)
}

// issuerName is the issuer's common name, or its whole name.
func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// plural returns "1 kubelet" or "2 kubelets".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// names lists at most max names, then how many more.
func names(list []string, limit int) string {
	if len(list) <= limit {
		return strings.Join(list, " ")
	}
	return fmt.Sprintf("%s … (%d more)", strings.Join(list[:limit], " "), len(list)-limit)
}
