package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csrguard/csrguard/internal/diagnose"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

func newPreflightCommand() *cobra.Command {
	o := &diagnoseOptions{}
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Before enabling rotation: would every node get a serving certificate?",
		Long: `Answer, read-only, "if I turn on kubelet serving-certificate rotation now, will
every node get a certificate?". For every Node it builds the CSR the kubelet
would send (from the Node's addresses, as the kubelet does) and runs the
policy on it; it checks that an approver is installed and running, that the
signer issues kubelet-serving certificates, and that the approver's
ServiceAccount may approve them; and it prints the rollback plan.
` + exitCodes("a node would not get a certificate, or a check fails"),
		Example: `  csrguard preflight
  kubectl csrguard preflight -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.probe = false // preflight asks about the future, not today's certificates
			s, err := o.snapshot(cmd)
			if err != nil {
				return err
			}
			cfg, _, err := o.policy.config()
			if err != nil {
				return err
			}
			restCfg, err := o.kube.restConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			rbac, err := approverRBAC(cmd.Context(), restCfg, s.Approvers)
			if err != nil {
				return err
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			r, err := diagnose.Preflight(cmd.Context(), s, cfg, key, rbac)
			if err != nil {
				return err
			}
			if err := o.output.print(cmd.OutOrStdout(), newPreflightOutput(r)); err != nil {
				return err
			}
			if !r.OK {
				return findingsError{fmt.Errorf("preflight failed")}
			}
			return nil
		},
	}
	var s flagSections
	o.addFlags(&s)
	// Probing flags do not apply: preflight does not probe.
	for _, f := range []string{"probe", "probe-timeout", "probe-concurrency", "kubelet-ca-file"} {
		_ = cmd.Flags().MarkHidden(f)
	}
	s.install(cmd)
	return cmd
}

// approverRBAC checks that the ServiceAccount of each csrguard Deployment
// found may approve kubelet-serving CSRs, with a SubjectAccessReview. It
// returns nil when no csrguard Deployment was found (an out-of-cluster
// csrguard is known by its Lease only).
func approverRBAC(ctx context.Context, cfg *rest.Config, approvers []diagnose.Approver) (*diagnose.PreflightCheck, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, a := range approvers {
		if a.Kind != servingcsr.ApproverCSRGuard || !strings.HasPrefix(a.Where, "Deployment ") {
			continue
		}
		d, err := cs.AppsV1().Deployments(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
		if err != nil {
			return &diagnose.PreflightCheck{Name: "rbac", Detail: fmt.Sprintf("cannot read Deployment %s/%s: %v", a.Namespace, a.Name, err)}, nil
		}
		sa := d.Spec.Template.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		user := "system:serviceaccount:" + a.Namespace + ":" + sa
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + a.Namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: certificatesv1.GroupName, Resource: "signers", Verb: "approve", Name: certificatesv1.KubeletServingSignerName,
			},
		}}, metav1.CreateOptions{})
		if err != nil {
			return &diagnose.PreflightCheck{Name: "rbac", Detail: fmt.Sprintf("cannot check %s's rights: %v", user, err)}, nil
		}
		if !sar.Status.Allowed {
			return &diagnose.PreflightCheck{Name: "rbac", Detail: fmt.Sprintf("%s may not approve for signer %s: check the csrguard ClusterRole and its binding", user, certificatesv1.KubeletServingSignerName)}, nil
		}
		return &diagnose.PreflightCheck{Name: "rbac", OK: true, Detail: fmt.Sprintf("%s may approve for signer %s", user, certificatesv1.KubeletServingSignerName)}, nil
	}
	return nil, nil
}
