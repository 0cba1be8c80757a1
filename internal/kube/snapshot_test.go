package kube

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/policy"
)

// TestReadSnapshot checks that a laptop command reads what the controller
// decides with: discovered, remembered and static addresses merged once, the
// recorded claims and the namespaces.
func TestReadSnapshot(t *testing.T) {
	objs := append(kubetest.ClusterObjects(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "csrguard"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
	)
	reader := fake.NewClientBuilder().WithObjects(objs...).Build()
	store := history.NewStore(reader, reader, "csrguard")
	// An API server address seen before, no longer in the EndpointSlice.
	if _, err := store.SaveIdentity(t.Context(), history.Identity{"192.168.10.4": {FirstSeen: t0, LastSeen: t0, Sources: []string{SourceEndpointSlice}}}); err != nil {
		t.Fatal(err)
	}
	claims := map[string]policy.Claim{"10.0.0.10": {Node: "node-a", Since: t0}}
	if _, err := store.SaveClaims(t.Context(), claims, t0); err != nil {
		t.Fatal(err)
	}
	static := policy.Cluster{
		APIServerAddresses: addrs("203.0.113.7", kubetest.APIServerEndpoint, "192.168.10.4"),
		ServiceCIDRs:       prefixes(kubetest.ServiceCIDR, "10.96.0.0/12"),
	}
	nodes := []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.10"}},
	}}}

	s, _, err := ReadSnapshot(t.Context(), reader, nil, "csrguard", static, nodes)
	if err != nil {
		t.Fatalf("ReadSnapshot() error = %v", err)
	}
	want := kubetest.ClusterText{
		APIServerAddresses: []string{"192.168.10.4", kubetest.APIServerEndpoint, "203.0.113.7"},
		ServiceCIDRs:       []string{"10.96.0.0/12", kubetest.ServiceCIDR, kubetest.APIServerClusterIP + "/32"},
	}
	if diff := cmp.Diff(kubetest.AsText(s.Cluster), want); diff != "" {
		t.Errorf("Cluster (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(s.Claims, claims); diff != "" {
		t.Errorf("Claims (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(s.Namespaces, []string{"csrguard", "default"}); diff != "" {
		t.Errorf("Namespaces (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(s.Nodes, policy.FromNodes(nodes)); diff != "" {
		t.Errorf("Nodes (-got +want):\n%s", diff)
	}
}

// TestReadSnapshotErrors checks that a laptop command refuses to decide on
// less than the controller knows.
func TestReadSnapshotErrors(t *testing.T) {
	failConfigMaps := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok && key.Namespace == "csrguard" {
			return apierrors.NewServiceUnavailable("etcd is down")
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	tests := []struct {
		name    string
		objs    []client.Object
		funcs   interceptor.Funcs
		wantErr string
	}{
		{"no_kubernetes_service", nil, interceptor.Funcs{}, "discover API server addresses and service CIDRs"},
		{"record_unreadable", kubetest.ClusterObjects(), failConfigMaps, "read csrguard's record of the API server's addresses"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reader := fake.NewClientBuilder().WithObjects(tc.objs...).WithInterceptorFuncs(tc.funcs).Build()
			_, _, err := ReadSnapshot(t.Context(), reader, nil, "csrguard", policy.Cluster{}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ReadSnapshot() error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
