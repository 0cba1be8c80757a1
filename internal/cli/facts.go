package cli

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/policy"
)

// clusterView is one read of what the policy decides with, for commands
// that evaluate CSRs from a laptop (explain, approve).
type clusterView struct {
	cs    kubernetes.Interface
	facts policy.Facts
	csrs  []certificatesv1.CertificateSigningRequest // kubelet-serving only
}

// decideSetup validates the cluster, output and policy flags, loads the
// kubeconfig and reads the cluster: the common start of commands that decide
// CSRs.
func decideSetup(ctx context.Context, output string, pol *policyOptions, kube *kubeOptions) (policy.Config, *clusterView, error) {
	if err := kube.validate(); err != nil {
		return policy.Config{}, nil, err
	}
	if err := validateOutput(output); err != nil {
		return policy.Config{}, nil, err
	}
	cfg, static, err := pol.config()
	if err != nil {
		return cfg, nil, err
	}
	restCfg, err := kube.restConfig()
	if err != nil {
		return cfg, nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	view, err := readCluster(ctx, restCfg, kube.csrguardNamespace(), static)
	return cfg, view, err
}

// readCluster lists Nodes and kubelet-serving CSRs and reads what else the
// policy decides with (kube.ReadSnapshot), adding static, exactly as the
// controller would see it.
func readCluster(ctx context.Context, cfg *rest.Config, namespace string, static policy.Cluster) (*clusterView, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	reader, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	nodes, err := kube.ListNodes(ctx, cs)
	if err != nil {
		return nil, err
	}
	csrs, err := kube.ListServingCSRs(ctx, cs)
	if err != nil {
		return nil, err
	}
	snap, _, err := kube.ReadSnapshot(ctx, reader, cfg, namespace, static, nodes)
	if err != nil {
		return nil, err
	}
	return &clusterView{cs: cs, facts: policy.NewSnapshotFacts(snap), csrs: csrs}, nil
}
