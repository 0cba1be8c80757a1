package cli

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/approval"
	"github.com/csrguard/csrguard/internal/policy"
)

// clusterView is one read of what the policy decides with, for commands
// that evaluate CSRs from a laptop (explain, approve).
type clusterView struct {
	cs    kubernetes.Interface
	facts policy.Facts
	csrs  []certificatesv1.CertificateSigningRequest // kubelet-serving only
}

// decideSetup validates the output and policy flags, loads the kubeconfig
// and reads the cluster: the common start of commands that decide CSRs.
func decideSetup(ctx context.Context, output string, pol *policyOptions, kube *kubeOptions) (policy.Config, *clusterView, error) {
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
	view, err := readCluster(ctx, restCfg, static)
	return cfg, view, err
}

// readCluster lists Nodes and kubelet-serving CSRs and discovers the API
// server's addresses and service CIDRs, adding static, exactly as the
// controller would see them.
func readCluster(ctx context.Context, cfg *rest.Config, static policy.Cluster) (*clusterView, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	reader, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	csrs, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list kubelet-serving CSRs: %w", err)
	}
	cluster, err := approval.Discover(ctx, reader)
	if err != nil {
		return nil, fmt.Errorf("discover API server addresses and service CIDRs (needed to decide safely): %w", err)
	}
	cluster.APIServerAddresses = append(cluster.APIServerAddresses, static.APIServerAddresses...)
	cluster.ServiceCIDRs = append(cluster.ServiceCIDRs, static.ServiceCIDRs...)
	return &clusterView{cs: cs, facts: policy.NewSnapshotFacts(policy.FromNodes(nodes.Items), cluster), csrs: csrs.Items}, nil
}
