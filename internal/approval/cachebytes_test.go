package approval

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"reflect"
	"runtime"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// BenchmarkCacheBytes reports the heap each cached object keeps (B/object): objects shaped like
// the bench's and like a real kubelet's are decoded from JSON (so every string and byte slice is
// its own allocation, as the informer's decoder makes them) and kept as the controller keeps them:
// a CSR passed through the transform CacheOptions sets and added to an indexer with the indexes
// Setup registers, as the manager's informers do; a Node added to a nodes.Store. "untrimmed" is
// the same object in a plain indexer, for scale.
//
//	go test -run '^$' -bench CacheBytes ./internal/approval
func BenchmarkCacheBytes(b *testing.B) {
	var trimmed toolscache.TransformFunc
	for o, by := range CacheOptions().ByObject {
		if _, ok := o.(*certificatesv1.CertificateSigningRequest); ok {
			trimmed = by.Transform
		}
	}
	indexed := func(typ reflect.Type, transform toolscache.TransformFunc) func() func(any) error {
		return func() func(any) error {
			store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, indexersOf(typ))
			return func(o any) error {
				t, err := transform(o)
				if err != nil {
					return err
				}
				return store.Add(t)
			}
		}
	}
	untrimmed := func(obj any) (any, error) { return obj, nil }
	nodeStore := func() func(any) error {
		return nodes.NewStore(nil, policy.DefaultConfig().ControlPlaneLabelKeys()).Add
	}
	nodeType, csrType := reflect.TypeFor[corev1.Node](), reflect.TypeFor[certificatesv1.CertificateSigningRequest]()
	issuer := newIssuer(b)
	for _, tc := range []struct {
		name string
		obj  func(i int) client.Object
		kept func() func(any) error
		all  func() func(any) error
	}{
		{"Node/bench", benchNode, nodeStore, indexed(nodeType, untrimmed)},
		{"Node/kubelet", kubeletNode, nodeStore, indexed(nodeType, untrimmed)},
		{"CSR/pending", func(i int) client.Object { return kubeletCSR(b, i, nil) }, indexed(csrType, trimmed), indexed(csrType, untrimmed)},
		{"CSR/issued", func(i int) client.Object { return kubeletCSR(b, i, issuer) }, indexed(csrType, trimmed), indexed(csrType, untrimmed)},
		{"CSR/superseded", func(i int) client.Object { return deniedSupersededCSR(b, i) }, indexed(csrType, trimmed), indexed(csrType, untrimmed)},
	} {
		for _, k := range []struct {
			name string
			sink func() func(any) error
		}{{"untrimmed", tc.all}, {"cached", tc.kept}} {
			b.Run(tc.name+"/"+k.name, func(b *testing.B) {
				var perObject float64
				for b.Loop() {
					perObject = cachedBytes(b, tc.obj, k.sink)
				}
				b.ReportMetric(perObject, "B/object")
			})
		}
	}
}

// indexersOf returns the indexes Setup registers for objects of typ, as controller-runtime's
// IndexField indexes a cluster-scoped object.
func indexersOf(typ reflect.Type) toolscache.Indexers {
	indexers := toolscache.Indexers{}
	for _, i := range indexes {
		if reflect.TypeOf(i.obj).Elem() == typ {
			indexers["field:"+i.field] = func(o any) ([]string, error) {
				var keys []string
				for _, k := range i.extract(o.(client.Object)) {
					keys = append(keys, "__all_namespaces/"+k)
				}
				return keys, nil
			}
		}
	}
	return indexers
}

// cachedBytes returns the heap kept per object by a store that newSink makes, holding objects
// built by obj.
func cachedBytes(b *testing.B, obj func(i int) client.Object, newSink func() func(any) error) float64 {
	const n = 2000
	typ := reflect.TypeOf(obj(0)).Elem()
	// Encoded up front and kept to the end, so that only the decoded objects count.
	encoded := make([][]byte, n)
	for i := range n {
		var err error
		if encoded[i], err = json.Marshal(obj(i)); err != nil {
			b.Fatal(err)
		}
	}
	before := heapInUse()
	sink := newSink()
	for i := range n {
		o := reflect.New(typ).Interface().(client.Object)
		if err := json.Unmarshal(encoded[i], o); err != nil {
			b.Fatal(err)
		}
		if err := sink(o); err != nil {
			b.Fatal(err)
		}
	}
	after := heapInUse()
	runtime.KeepAlive(sink)
	runtime.KeepAlive(encoded)
	return float64(after-before) / n
}

// heapInUse returns the bytes of live heap objects after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

var benchCreated = metav1.NewTime(time.Date(2026, time.November, 30, 12, 0, 0, 0, time.UTC))

// benchNode is a Node as test/cmd/bench registers it: a hostname label, an InternalIP and
// Hostname address and the kubelet port, written by an administrator.
func benchNode(i int) client.Object {
	name := fmt.Sprintf("bench-node-%05d", i)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID(fmt.Sprintf("6f1c3a52-0d7e-4d1b-9a4e-%012d", i)), ResourceVersion: fmt.Sprint(100000 + i),
			CreationTimestamp: benchCreated,
			Labels:            map[string]string{"kubernetes.io/hostname": name},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &benchCreated, FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{".":{},"f:kubernetes.io/hostname":{}}}}`)},
				{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &benchCreated, FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:addresses":{".":{},"k:{\"type\":\"Hostname\"}":{".":{},"f:address":{},"f:type":{}},"k:{\"type\":\"InternalIP\"}":{".":{},"f:address":{},"f:type":{}}},"f:daemonEndpoints":{"f:kubeletEndpoint":{"f:Port":{}}}}}`)},
			},
		},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)},
				{Type: corev1.NodeHostName, Address: name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		},
	}
}

// kubeletNode is a Node as a kubelet of a real cluster (kubeadm, containerd, a cloud provider)
// keeps it: well-known and cloud labels, the annotations of the kubelet, CSI and CNI, the
// managed fields of four writers, capacity, five conditions, 30 images and the system info.
func kubeletNode(i int) client.Object {
	n := benchNode(i).(*corev1.Node)
	name := n.Name
	n.Labels = map[string]string{
		"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/instance-type": "m6i.xlarge",
		"failure-domain.beta.kubernetes.io/region": "eu-west-1", "failure-domain.beta.kubernetes.io/zone": "eu-west-1a",
		"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
		"node.kubernetes.io/instance-type": "m6i.xlarge", "topology.kubernetes.io/region": "eu-west-1",
		"topology.kubernetes.io/zone": "eu-west-1a", "topology.ebs.csi.aws.com/zone": "eu-west-1a",
		"node-role.kubernetes.io/worker": "", "nodepool": "general-purpose",
	}
	n.Annotations = map[string]string{
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
		"csi.volume.kubernetes.io/nodeid":                        fmt.Sprintf(`{"ebs.csi.aws.com":"i-0%016x"}`, i),
		"kubeadm.alpha.kubernetes.io/cri-socket":                 "unix:///run/containerd/containerd.sock",
		"projectcalico.org/IPv4Address":                          n.Status.Addresses[0].Address + "/16",
		"projectcalico.org/IPv4VXLANTunnelAddr":                  fmt.Sprintf("192.168.%d.%d", i>>8&255, i&255),
	}
	fields := func(manager, sub string, size int) metav1.ManagedFieldsEntry {
		raw := []byte(`{"f:status":{"f:conditions":{`)
		for len(raw) < size {
			raw = append(raw, `"k:{\"type\":\"Ready\"}":{"f:lastHeartbeatTime":{},"f:lastTransitionTime":{},"f:message":{},"f:reason":{},"f:status":{}},`...)
		}
		raw = append(raw, `".":{}}}}`...)
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &benchCreated,
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(raw)), Subresource: sub}
	}
	n.ManagedFields = []metav1.ManagedFieldsEntry{fields("kubeadm", "", 400), fields("kubelet", "", 1200), fields("kube-controller-manager", "", 500), fields("kubelet", "status", 3000)}
	n.Spec = corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", i&255), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i&255)},
		ProviderID: fmt.Sprintf("aws:///eu-west-1a/i-0%016x", i)}
	quantities := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16163524Ki"),
		corev1.ResourceEphemeralStorage: resource.MustParse("104845292Ki"), corev1.ResourcePods: resource.MustParse("58"),
		"hugepages-1Gi": resource.MustParse("0"), "hugepages-2Mi": resource.MustParse("0"), "attachable-volumes-aws-ebs": resource.MustParse("25"),
	}
	n.Status.Capacity, n.Status.Allocatable = quantities, quantities
	n.Status.Addresses = append(n.Status.Addresses,
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: name + ".eu-west-1.compute.internal"})
	for _, c := range []struct{ typ, reason, message string }{
		{"MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
		{"DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
		{"PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
		{"Ready", "KubeletReady", "kubelet is posting ready status"},
		{"NetworkUnavailable", "CalicoIsUp", "Calico is running on this node"},
	} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeConditionType(c.typ), Status: corev1.ConditionFalse,
			LastHeartbeatTime: benchCreated, LastTransitionTime: benchCreated, Reason: c.reason, Message: c.message})
	}
	for j := range 30 {
		repo := fmt.Sprintf("registry.example.com/team-%d/service-%d", j%7, j)
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("%s@sha256:%064x", repo, j), fmt.Sprintf("%s:v1.%d.%d", repo, j, i%10)},
			SizeBytes: int64(20_000_000 + j*1_000_000),
		})
	}
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID: fmt.Sprintf("ec2%029x", i), SystemUUID: fmt.Sprintf("ec2%05x-1c2d-3e4f-5a6b-7c8d9e0f1a2b", i), BootID: fmt.Sprintf("%08x-5b6c-4d7e-8f90-a1b2c3d4e5f6", i),
		KernelVersion: "6.8.0-1021-aws", OSImage: "Ubuntu 24.04.1 LTS", ContainerRuntimeVersion: "containerd://1.7.24",
		KubeletVersion: "v1.34.2", OperatingSystem: "linux", Architecture: "amd64",
	}
	n.Status.RuntimeHandlers = []corev1.NodeRuntimeHandler{{Name: "runc", Features: &corev1.NodeRuntimeHandlerFeatures{}}, {Name: "", Features: &corev1.NodeRuntimeHandlerFeatures{}}}
	return n
}

// issuer signs kubelet-serving certificates as kube-controller-manager does: ECDSA P-256, as
// test/controlplane's CA and Talos's are (a kubeadm CA is RSA 2048: 190 bytes more per
// certificate).
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newIssuer(b *testing.B) *issuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: benchCreated.Time, NotAfter: benchCreated.AddDate(10, 0, 0), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return &issuer{cert: cert, key: key}
}

// kubeletCSR is the CSR of test/cmd/bench's servingCSR as the API server keeps it — the
// requester's identity and the managed fields of the kubelet and of csrguard — and, with iss,
// approved by csrguard and issued by kube-controller-manager.
func kubeletCSR(b *testing.B, i int, iss *issuer) client.Object {
	node := fmt.Sprintf("bench-node-%05d", i)
	ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
	key := csrKey(b)
	req, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames: []string{node}, IPAddresses: []net.IP{ip},
	}, key)
	if err != nil {
		b.Fatal(err)
	}
	entry := func(manager, sub, raw string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "certificates.k8s.io/v1",
			Time: &benchCreated, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(raw), Subresource: sub}
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name: node + "-serving", UID: types.UID(fmt.Sprintf("3b2a8e61-4c5d-4e6f-8a9b-%012d", i)), ResourceVersion: fmt.Sprint(200000 + i),
			CreationTimestamp: benchCreated,
			ManagedFields: []metav1.ManagedFieldsEntry{
				entry("kubelet", "", `{"f:spec":{"f:request":{},"f:signerName":{},"f:usages":{}}}`),
			},
		},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			Username:   "system:node:" + node,
			Groups:     []string{"system:nodes", "system:authenticated"},
			Extra:      map[string]certificatesv1.ExtraValue{"authentication.kubernetes.io/credential-id": {fmt.Sprintf("X509SHA256=%064x", i)}},
		},
	}
	if iss == nil {
		return csr
	}
	csr.ManagedFields = append(csr.ManagedFields,
		entry("csrguard", "approval", `{"f:status":{"f:conditions":{".":{},"k:{\"type\":\"Approved\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}}}}`),
		entry("kube-controller-manager", "status", `{"f:status":{"f:certificate":{}}}`))
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: servingcsr.ApprovedReason,
		Message:        fmt.Sprintf("csrguard: node %q: every SAN is one of its addresses", node),
		LastUpdateTime: benchCreated, LastTransitionTime: benchCreated,
	}}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(1000 + i)), Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames: []string{node}, IPAddresses: []net.IP{ip},
		NotBefore: benchCreated.Time, NotAfter: benchCreated.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.cert, key.Public(), iss.key)
	if err != nil {
		b.Fatal(err)
	}
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return csr
}

// deniedSupersededCSR is kubeletCSR denied by csrguard as superseded, as a recovery leaves a dozen per
// node.
func deniedSupersededCSR(b *testing.B, i int) client.Object {
	csr := kubeletCSR(b, i, nil).(*certificatesv1.CertificateSigningRequest)
	csr.ManagedFields = append(csr.ManagedFields, metav1.ManagedFieldsEntry{Manager: "csrguard", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "certificates.k8s.io/v1", Time: &benchCreated, FieldsType: "FieldsV1", Subresource: "approval",
		FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:conditions":{".":{},"k:{\"type\":\"Denied\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}}}}`)})
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: servingcsr.SupersededReason,
		Message:        fmt.Sprintf("csrguard: superseded: node %q has the newer CSR %s-serving-2 approved; its kubelet waits only for its newest CSR", csr.Spec.Username, csr.Name),
		LastUpdateTime: benchCreated, LastTransitionTime: benchCreated,
	}}
	return csr
}

var benchCSRKey *ecdsa.PrivateKey

func csrKey(b *testing.B) *ecdsa.PrivateKey {
	if benchCSRKey == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		benchCSRKey = k
	}
	return benchCSRKey
}
