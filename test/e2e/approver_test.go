package e2e

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
)

// TestApproverIssuesEveryKubelet: with csrguard running, kubelets with
// rotation on get certificates with no manual step, a second rotation is
// approved too, and so is the CSR a node files after its addresses change.
func TestApproverIssuesEveryKubelet(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true)
	for _, name := range []string{"talos-cp-1", "talos-worker-1", "talos-worker-2"} {
		c.addKubelet(ctx, name, kubelet.Talos)
	}
	// A dual-stack node with every address type the kubelet turns into SANs.
	c.addKubelet(ctx, "dual-stack", kubelet.Debian, kubelet.Addresses("dual-stack", c.pool.Next(),
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "2001:db8::a1"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "dual-stack.internal.example"},
		corev1.NodeAddress{Type: corev1.NodeExternalDNS, Address: "dual-stack.example.com"})...)

	servingCA := pool(t, c.cp.KubeletServingCAPEM)
	first := map[string]*x509Cert{}
	for _, k := range c.nodes {
		cert, err := k.WaitForCertificate(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := handshake(ctx, k.Endpoint(), servingCA); err != nil {
			t.Errorf("%s: handshake: %v", k.Name(), err)
		}
		if diff := cmp.Diff(sans(cert), addressSANs(k.Addresses())); diff != "" {
			t.Errorf("%s: SANs (-got +want):\n%s", k.Name(), diff)
		}
		first[k.Name()] = cert
	}

	// Second rotation, as the kubelet does at 70–90% of the lifetime.
	k := c.byName["talos-worker-1"]
	go func() { _ = k.Rotate(ctx) }()
	second, err := k.WaitForCertificate(ctx, first[k.Name()])
	if err != nil {
		t.Fatal(err)
	}

	// New addresses: the kubelet asks again, for the new addresses only.
	moved := kubelet.Addresses(k.Name(), c.pool.Next())
	if err := k.SetAddresses(ctx, moved); err != nil {
		t.Fatal(err)
	}
	third, err := k.WaitForCertificate(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sans(third), addressSANs(moved)); diff != "" {
		t.Errorf("after address change: SANs (-got +want):\n%s", diff)
	}
	// The test's forced rotations run beside the certificate manager's own
	// loop, so a kubelet may have two CSRs in flight; the older is then denied
	// as Superseded (README, recovery). Every other CSR is issued.
	for _, csr := range c.csrsOf(ctx, k.Name()) {
		if s := servingcsr.StateOf(&csr); s != servingcsr.Issued && (s != servingcsr.Denied || c.denyReason(ctx, csr.Name) != servingcsr.SupersededReason) {
			t.Errorf("CSR %s of %s: state %s (%s), want Issued or Denied as Superseded", csr.Name, k.Name(), s, c.denyReason(ctx, csr.Name))
		}
	}
}

// TestNodeAppearsLater: a CSR whose Node does not exist yet is held, and
// approved as soon as the Node registers with matching addresses.
func TestNodeAppearsLater(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true, "--hold-retry=1h") // only the Node watch may wake it
	ip := c.pool.Next()
	node := c.nodeClient("late")
	created := c.createCSR(ctx, node, csrtest.New(t, csrtest.Node("late"), csrtest.Name("csr-late"), csrtest.IPAddresses(ip.String())))

	controlplane.Eventually(t, ctx, "a Held event for csr-late", func() bool { return c.hasEvent(ctx, created.Name, "Held") })
	if s := c.state(ctx, created.Name); s != "Pending" {
		t.Fatalf("CSR of a node that does not exist: state %s, want Pending", s)
	}
	c.registerNode(ctx, node, "late", kubelet.Addresses("late", ip))
	controlplane.Eventually(t, ctx, "csr-late issued", func() bool { return c.state(ctx, created.Name) == "Issued" })
}

// hostile is one CSR a compromised node or a foreign requester might file.
type hostile struct {
	name   string
	as     string // "attacker" (a node), "admin", "not-a-node", "ghost"
	opts   []csrtest.Option
	reason policy.Reason
	// orLater, when set, is the reason of the same denial once the node is
	// older than the address settle time: which check names it depends on
	// when csrguard gets to the CSR, since a node's CSRs are decided newest
	// first, one after another (README, recovery).
	orLater policy.Reason
}

// TestHostileCorpus files CSRs that must never be approved, with node
// identities where the API server allows it, while legitimate kubelets run;
// each ends Denied with its expected reason, none is approved, and the
// legitimate kubelets still get certificates.
func TestHostileCorpus(t *testing.T) {
	ctx := controlplane.Deadline(t, 4*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true,
		"--allowed-node-cidrs=198.51.100.0/24,203.0.113.0/24,2001:db8::/32",
		`--dns-name-regex=[a-z0-9-]+(\.internal\.example)?`,
		"--reserved-names=api.internal.example",
		"--max-expiration=720h")
	victim := c.addKubelet(ctx, "victim", kubelet.Talos, kubelet.Addresses("victim", c.pool.Next(),
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "victim.internal.example"})...)
	victimIP := victim.Addresses()[0].Address
	// The victim got its certificate, and owns its address, before the
	// attacker appears (TestSquatterCannotDenyOwner checks it keeps rotating).
	if _, err := victim.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c.waitClaim(ctx, victimIP, "victim")
	bystander := c.addKubelet(ctx, "bystander", kubelet.Debian)
	// A Node with no Hostname address: its name is still its own.
	c.registerNode(ctx, c.nodeClient("nameless"), "nameless", []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: c.pool.Next().String()}})

	// The attacker is a registered node that lies in its own status as a
	// compromised kubelet can (NodeRestriction lets a node write its own
	// addresses): it claims the victim's IP, the API server's service IP, the
	// metadata IP, a public IP and a reserved name.
	attackerIP := c.pool.Next()
	attacker := c.nodeClient("attacker")
	c.registerNode(ctx, attacker, "attacker", kubelet.Addresses("attacker", attackerIP,
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: victimIP},
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "10.96.0.1"},
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "169.254.169.254"},
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "8.8.8.8"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "kubernetes.default.svc"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "api.internal.example"},
		corev1.NodeAddress{Type: corev1.NodeExternalDNS, Address: "attacker.evil.example"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "nameless"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "bystander.internal.example"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "metrics-server.kube-system"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "not-yet-a-service.default"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "10-244-1-2.default.pod"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "010.096.000.001"},
	))
	c.allowCSRCreation(ctx, "csrguard-e2e-requesters")

	own := func(opts ...csrtest.Option) []csrtest.Option {
		return append([]csrtest.Option{csrtest.Node("attacker"), csrtest.IPAddresses(attackerIP.String())}, opts...)
	}
	dns := func(names ...string) []csrtest.Option { return own(csrtest.DNSNames(names...)) }
	ips := func(addrs ...string) []csrtest.Option { return own(csrtest.IPAddresses(addrs...)) }
	corpus := []hostile{
		// SANs that belong to someone else.
		{name: "victim-ip", opts: ips(attackerIP.String(), victimIP), reason: policy.SANOfOtherNode},
		{name: "victim-ip-only", opts: ips(victimIP), reason: policy.SANOfOtherNode},
		{name: "victim-hostname", opts: dns("attacker", "victim"), reason: policy.SANNotOnNode},
		{name: "victim-hostname-upper", opts: dns("VICTIM"), reason: policy.SANNotOnNode},
		{name: "victim-internal-dns", opts: dns("victim.internal.example"), reason: policy.SANNotOnNode},
		{name: "unclaimed-ip", opts: ips("198.51.100.254"), reason: policy.SANNotOnNode},
		// Names of other Nodes, even one that reports no Hostname, and names
		// that start with another Node's name, written into its own status.
		{name: "claimed-name-of-nameless-node", opts: dns("nameless"), reason: policy.SANOfOtherNode},
		{name: "claimed-name-starting-with-other-node", opts: dns("bystander.internal.example"), reason: policy.SANOfOtherNode},
		// The API server and cluster-internal names.
		{name: "kubernetes", opts: dns("kubernetes"), reason: policy.ReservedName},
		{name: "kubernetes-default", opts: dns("kubernetes.default"), reason: policy.ReservedName},
		{name: "kubernetes-default-svc", opts: dns("kubernetes.default.svc"), reason: policy.ReservedName},
		{name: "kubernetes-default-svc-fqdn", opts: dns("kubernetes.default.svc.cluster.local"), reason: policy.ReservedName},
		{name: "kubernetes-default-svc-fqdn-upper", opts: dns("Kubernetes.Default.Svc.Cluster.Local"), reason: policy.ReservedName},
		{name: "some-service", opts: dns("metrics-server.kube-system.svc"), reason: policy.ReservedName},
		{name: "cluster-local", opts: dns("anything.cluster.local"), reason: policy.ReservedName},
		{name: "localhost", opts: dns("localhost"), reason: policy.ReservedName},
		{name: "loopback", opts: ips("127.0.0.1"), reason: policy.ReservedAddress},
		{name: "loopback-v6", opts: ips("::1"), reason: policy.ReservedAddress},
		// In-cluster names pods resolve through their DNS search path.
		{name: "claimed-service-short-name", opts: dns("metrics-server.kube-system"), reason: policy.ReservedName},
		{name: "claimed-name-in-existing-namespace", opts: dns("not-yet-a-service.default"), reason: policy.ReservedName},
		{name: "claimed-pod-name", opts: dns("10-244-1-2.default.pod"), reason: policy.ReservedName},
		{name: "pod-name-fqdn", opts: dns("10-244-1-2.default.pod.cluster.local"), reason: policy.ReservedName},
		{name: "operator-reserved-name", opts: dns("api.internal.example"), reason: policy.ReservedName},
		{name: "apiserver-service-ip", opts: ips("10.96.0.1"), reason: policy.ReservedAddress},
		// DNS SANs that read as IP addresses, however they are spelled.
		{name: "apiserver-service-ip-as-dns", opts: dns("10.96.0.1"), reason: policy.DNSNameIsAddress},
		{name: "claimed-ip-as-dns-leading-zeros", opts: dns("010.096.000.001"), reason: policy.DNSNameIsAddress},
		{name: "ip-as-dns-short-form", opts: dns("10.1"), reason: policy.DNSNameIsAddress},
		{name: "service-cidr", opts: ips("10.96.12.34"), reason: policy.ReservedAddress},
		// An API server endpoint is held for the settle time (the node might yet
		// be labelled control-plane) while the allowed CIDRs deny it at once;
		// after the settle time the reserved-address check denies it first.
		{name: "apiserver-endpoint", opts: ips(c.cp.AdvertiseAddress.String()), reason: policy.AddressNotAllowed, orLater: policy.ReservedAddress},
		{name: "metadata-ipv4", opts: ips("169.254.169.254"), reason: policy.ReservedAddress},
		{name: "metadata-ipv6", opts: ips("fd00:ec2::254"), reason: policy.ReservedAddress},
		{name: "link-local", opts: ips("169.254.10.10"), reason: policy.ReservedAddress},
		{name: "unspecified-v4", opts: ips("0.0.0.0"), reason: policy.ReservedAddress},
		{name: "unspecified-v6", opts: ips("::"), reason: policy.ReservedAddress},
		{name: "multicast", opts: ips("224.0.0.1"), reason: policy.ReservedAddress},
		{name: "broadcast", opts: ips("255.255.255.255"), reason: policy.ReservedAddress},
		{name: "mapped-metadata", opts: own(csrtest.Extensions(csrtest.SANExtension(t, ipSAN("::ffff:169.254.169.254")))), reason: policy.ReservedAddress},
		// Addresses the attacker wrote into its own Node status.
		{name: "claimed-service-ip", opts: ips(attackerIP.String(), "10.96.0.1"), reason: policy.ReservedAddress},
		{name: "claimed-metadata-ip", opts: ips("169.254.169.254"), reason: policy.ReservedAddress},
		{name: "claimed-reserved-name", opts: dns("kubernetes.default.svc"), reason: policy.ReservedName},
		{name: "claimed-foreign-cidr", opts: ips("8.8.8.8"), reason: policy.AddressNotAllowed},
		{name: "claimed-name-outside-regex", opts: dns("attacker.evil.example"), reason: policy.DNSNameNotAllowed},
		// Malformed names and SAN types.
		{name: "wildcard", opts: dns("*.internal.example"), reason: policy.DNSNameInvalid},
		{name: "trailing-dot", opts: dns("attacker."), reason: policy.DNSNameInvalid},
		{name: "email-san", opts: own(csrtest.Emails("root@attacker")), reason: policy.SANTypeForbidden},
		{name: "uri-san", opts: own(csrtest.URIs("spiffe://cluster.local/ns/kube-system/sa/admin")), reason: policy.SANTypeForbidden},
		{name: "no-sans", opts: own(csrtest.DNSNames(), csrtest.IPAddresses()), reason: policy.NoSANs},
		{name: "too-many-sans", opts: dns(manyNames(25)...), reason: policy.TooManySANs},
		{name: "ca-extension", opts: own(csrtest.Extensions(basicConstraintsCA(t))), reason: policy.ExtensionForbidden},
		// Wrong usages, subject, key or lifetime.
		{name: "client-auth-usage", opts: own(csrtest.Usages(certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth)), reason: policy.UsagesInvalid},
		{name: "key-encipherment-client-auth", opts: own(csrtest.Usages(certificatesv1.UsageKeyEncipherment, certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth)), reason: policy.UsagesInvalid},
		{name: "server-auth-only", opts: own(csrtest.Usages(certificatesv1.UsageServerAuth)), reason: policy.UsagesInvalid},
		{name: "cert-sign-usage", opts: own(csrtest.Usages(certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageCertSign)), reason: policy.UsagesInvalid},
		{name: "org-masters", opts: own(csrtest.Organization("system:masters")), reason: policy.OrganizationInvalid},
		{name: "org-extra", opts: own(csrtest.Organization("system:nodes", "system:masters")), reason: policy.OrganizationInvalid},
		{name: "org-missing", opts: own(csrtest.Organization()), reason: policy.OrganizationInvalid},
		{name: "two-common-names", opts: own(csrtest.Subject(twoCNs("system:node:victim", "system:node:attacker"))), reason: policy.SubjectMismatch},
		{name: "rsa-1024", opts: own(csrtest.Key(csrtest.RSA1024)), reason: policy.KeyNotAllowed},
		{name: "ecdsa-p224", opts: own(csrtest.Key(csrtest.ECDSAP224)), reason: policy.KeyNotAllowed},
		{name: "ecdsa-p521", opts: own(csrtest.Key(csrtest.ECDSAP521)), reason: policy.KeyNotAllowed},
		{name: "ten-year-lifetime", opts: own(csrtest.ExpirationSeconds(10 * 365 * 24 * 3600)), reason: policy.ExpirationTooLong},
		// Requesters that are not the node.
		{name: "admin-for-node", as: "admin", opts: own(), reason: policy.RequesterNotNode},
		{name: "user-in-nodes-group", as: "not-a-node", opts: own(), reason: policy.RequesterNotNode},
		{name: "node-name-without-group", as: "system:node:attacker", opts: own(), reason: policy.RequesterGroupsInvalid},
	}

	clients := map[string]kubernetes.Interface{"attacker": attacker, "admin": c.admin}
	for _, user := range []string{"not-a-node", "system:node:attacker"} {
		groups := []string{"csrguard-e2e-requesters"}
		if user == "not-a-node" {
			groups = append(groups, "system:nodes")
		}
		clients[user] = c.userClient(user, groups...)
	}
	want, orLater := map[string]string{}, map[string]string{}
	for _, h := range corpus {
		as := h.as
		if as == "" {
			as = "attacker"
		}
		csr := csrtest.New(t, append(h.opts, csrtest.Name("hostile-"+h.name))...)
		c.createCSR(ctx, clients[as], csr)
		want[csr.Name] = string(h.reason)
		if h.orLater != "" {
			orLater[csr.Name] = string(h.orLater)
		}
	}
	if len(corpus) < 40 {
		t.Fatalf("corpus has %d CSRs, want at least 40", len(corpus))
	}

	got := map[string]string{}
	controlplane.Eventually(t, ctx, "every hostile CSR decided", func() bool {
		list, err := c.admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, csr := range list.Items {
			if _, ok := want[csr.Name]; !ok {
				continue
			}
			for _, cond := range csr.Status.Conditions {
				switch cond.Type {
				case certificatesv1.CertificateApproved:
					got[csr.Name] = "APPROVED"
				case certificatesv1.CertificateDenied:
					got[csr.Name] = cond.Reason
				}
			}
		}
		return len(got) == len(want)
	})
	for name, later := range orLater {
		if got[name] == later {
			t.Logf("%s denied %s: decided after the settle time", name, later)
			got[name] = want[name]
		}
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("hostile CSR outcomes (-got +want):\n%s", diff)
	}
	if _, err := bystander.WaitForCertificate(ctx, nil); err != nil {
		t.Errorf("the legitimate kubelet next to the attacker: %v", err)
	}
	controlplane.Eventually(t, ctx, "a Denied event for hostile-victim-ip", func() bool { return c.hasEvent(ctx, "hostile-victim-ip", "Denied") })
}

// TestAPIServerRestart: CSRs pending while the API server restarts are all
// decided afterwards — the legitimate approved, the hostile denied.
func TestAPIServerRestart(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true)
	k := c.addKubelet(ctx, "steady", kubelet.Debian)
	cert, err := k.WaitForCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}

	// CSRs of nodes that do not exist yet are held across the restart.
	var late []string
	ips := map[string]netip.Addr{}
	for i := range 3 {
		name := fmt.Sprintf("late-%d", i)
		ips[name] = c.pool.Next()
		csr := c.createCSR(ctx, c.nodeClient(name), csrtest.New(t, csrtest.Node(name), csrtest.Name("csr-"+name), csrtest.IPAddresses(ips[name].String())))
		late = append(late, csr.Name)
	}
	hostileCSR := c.createCSR(ctx, c.nodeClient("late-0"), csrtest.New(t, csrtest.Node("late-0"), csrtest.Name("csr-hostile"), csrtest.DNSNames("kubernetes.default.svc")))
	controlplane.Eventually(t, ctx, "late CSRs held", func() bool { return c.hasEvent(ctx, late[2], "Held") })

	if err := c.cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	for name, ip := range ips {
		c.registerNode(ctx, c.nodeClient(name), name, kubelet.Addresses(name, ip))
	}
	go func() { _ = k.Rotate(ctx) }()
	for _, name := range late {
		controlplane.Eventually(t, ctx, name+" issued after the restart", func() bool { return c.state(ctx, name) == "Issued" })
	}
	if _, err := k.WaitForCertificate(ctx, cert); err != nil {
		t.Fatalf("rotation after the restart: %v", err)
	}
	controlplane.Eventually(t, ctx, "hostile CSR denied", func() bool { return c.state(ctx, hostileCSR.Name) == "Denied" })
}

// TestLeaderFailover: two replicas elect a leader; killing it (SIGKILL, no
// release) makes the other take over and approvals continue.
func TestLeaderFailover(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	le := []string{"--leader-elect=true", "--namespace=csrguard",
		"--leader-election-lease-duration=4s", "--leader-election-renew-deadline=3s", "--leader-election-retry-period=500ms"}
	a := c.startCSRGuard(ctx, "replica-a", false, le...)
	b := c.startCSRGuard(ctx, "replica-b", false, le...)
	controlplane.Eventually(t, ctx, "both replicas ready (a leader is known)", func() bool { return a.ready(ctx) && b.ready(ctx) })

	k1 := c.addKubelet(ctx, "before-failover", kubelet.Debian)
	if _, err := k1.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	leader, standby := a, b
	if !leader.leads() {
		leader, standby = b, a
	}
	if !leader.leads() || standby.leads() {
		t.Fatalf("want exactly one leader: a leads=%v, b leads=%v", a.leads(), b.leads())
	}
	leader.Kill()

	k2 := c.addKubelet(ctx, "after-failover", kubelet.Debian)
	if _, err := k2.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !standby.leads() {
		t.Errorf("the standby approved without logging that it acquired the lease")
	}
}

// leads reports whether the replica logged that it acquired the Lease.
func (g *guard) leads() bool {
	return strings.Contains(strings.ToLower(controlplane.Tail(g.log, 100000)), "successfully acquired lease")
}

// --- helpers for CSRs and nodes ---

type x509Cert = x509.Certificate

func (c *cluster) nodeClient(name string) kubernetes.Interface {
	c.t.Helper()
	cfg, err := c.cp.NodeConfig(name)
	if err != nil {
		c.t.Fatal(err)
	}
	return mustClient(c.t, cfg)
}

func (c *cluster) userClient(user string, groups ...string) kubernetes.Interface {
	c.t.Helper()
	cfg, err := c.cp.UserConfig(user, groups...)
	if err != nil {
		c.t.Fatal(err)
	}
	return mustClient(c.t, cfg)
}

func mustClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// allowCSRCreation lets group create CSRs (the bootstrap role kubelets use
// before they are nodes), so tests can file CSRs as requesters that are not
// nodes.
func (c *cluster) allowCSRCreation(ctx context.Context, group string) {
	c.t.Helper()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + group},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
	}
	if _, err := c.admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// registerNode creates a Node as the node itself and writes its addresses.
func (c *cluster) registerNode(ctx context.Context, cs kubernetes.Interface, name string, addrs []corev1.NodeAddress) {
	c.t.Helper()
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("register node %s: %v", name, err)
	}
	n.Status.Addresses = addrs
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("node %s status: %v", name, err)
	}
}

// createCSR files csr as the client's identity (the API server overwrites
// username and groups) and returns what was stored.
func (c *cluster) createCSR(ctx context.Context, cs kubernetes.Interface, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	c.t.Helper()
	csr.Spec.Username, csr.Spec.Groups, csr.CreationTimestamp = "", nil, metav1.Time{}
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create CSR %s: %v", csr.Name, err)
	}
	return created
}

func (c *cluster) state(ctx context.Context, name string) string {
	csr, err := c.admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "error: " + err.Error()
	}
	return string(servingcsr.StateOf(csr))
}

// hasEvent reports whether an Event with reason regards the named CSR.
func (c *cluster) hasEvent(ctx context.Context, csr, reason string) bool {
	list, err := c.admin.EventsV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "CertificateSigningRequest" && e.Regarding.Name == csr && e.Reason == reason {
			return true
		}
	}
	return false
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("name-%d", i)
	}
	return out
}

// ipSAN is a 16-byte iPAddress GeneralName, as crypto/x509 would never write
// an IPv4-mapped address.
func ipSAN(s string) asn1.RawValue {
	a := netip.MustParseAddr(s).As16()
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: a[:]}
}

func basicConstraintsCA(t *testing.T) pkix.Extension {
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: v}
}

func twoCNs(first, second string) pkix.Name {
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	return pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: first}, {Type: cn, Value: second}},
		Organization: []string{"system:nodes"}}
}

// TestControlPlaneKubelet: a control-plane node's kubelet asks for its own IP,
// where the API server listens too. It is held until the installer labels the
// Node control-plane (a label a node cannot set on itself), then approved; a
// worker claiming the same kind of address is not.
func TestControlPlaneKubelet(t *testing.T) {
	ctx := controlplane.Deadline(t, 2*time.Minute)
	c := newCluster(t, controlplane.Options{})
	c.startCSRGuard(ctx, "csrguard", true, "--address-settle-time=1m")
	apiserver := corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: c.cp.AdvertiseAddress.String()}
	k := c.addKubelet(ctx, "cp-1", kubelet.Talos, kubelet.Addresses("cp-1", c.pool.Next(), apiserver)...)
	csr := c.waitPending(ctx, k.Name())
	controlplane.Eventually(t, ctx, "the CSR held while cp-1 is not labelled control-plane", func() bool { return c.hasEvent(ctx, csr.Name, "Held") })

	node, err := c.admin.CoreV1().Nodes().Get(ctx, k.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Labels[policy.ControlPlaneLabel] = ""
	if _, err := c.admin.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cert, err := k.WaitForCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sans(cert), c.cp.AdvertiseAddress.String()) {
		t.Errorf("control-plane kubelet certificate SANs %v lack its API server address", sans(cert))
	}
}
