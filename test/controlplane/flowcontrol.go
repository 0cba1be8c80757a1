package controlplane

import (
	"context"
	"fmt"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	// ThrottleLevel is the priority level and FlowSchema Throttle creates.
	ThrottleLevel = "test-throttle"
	// ballastLevel is a priority level no request uses. Its shares shrink
	// every other level's: this control plane has 3,000 seats
	// (--max-requests-inflight 2000 + --max-mutating-requests-inflight 1000,
	// for the benchmarks' bursts), which would give even a level of one
	// share 13 seats. With the ballast, ThrottleLevel gets one; the
	// suggested levels keep tens of seats each and may borrow every seat of
	// the ballast, which lends them all.
	ballastLevel  = "test-ballast"
	ballastShares = 3000
)

// Throttle puts every request of user in a Priority and Fairness level of
// one seat (nominalConcurrencyShares 1, nothing lent or borrowed) and one
// queue of queueLength: beyond one request executing and queueLength
// waiting, the API server answers 429 Too Many Requests at once. Tests of
// back-pressure use it (flowcontrol.apiserver.k8s.io/v1).
func (cp *ControlPlane) Throttle(ctx context.Context, user string, queueLength int32) error {
	cs, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	fc := cs.FlowcontrolV1()
	levels := []*flowcontrolv1.PriorityLevelConfiguration{
		{
			ObjectMeta: metav1.ObjectMeta{Name: ThrottleLevel},
			Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
				Type: flowcontrolv1.PriorityLevelEnablementLimited,
				Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
					NominalConcurrencyShares: ptr.To[int32](1),
					LendablePercent:          ptr.To[int32](0),
					BorrowingLimitPercent:    ptr.To[int32](0),
					LimitResponse: flowcontrolv1.LimitResponse{
						Type:    flowcontrolv1.LimitResponseTypeQueue,
						Queuing: &flowcontrolv1.QueuingConfiguration{Queues: 1, HandSize: 1, QueueLengthLimit: queueLength},
					},
				},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: ballastLevel},
			Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
				Type: flowcontrolv1.PriorityLevelEnablementLimited,
				Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
					NominalConcurrencyShares: ptr.To[int32](ballastShares),
					LendablePercent:          ptr.To[int32](100),
					LimitResponse:            flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject},
				},
			},
		},
	}
	for _, pl := range levels {
		if _, err := fc.PriorityLevelConfigurations().Create(ctx, pl, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create priority level %s: %w", pl.Name, err)
		}
	}
	fs := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: ThrottleLevel},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: ThrottleLevel},
			// Before every suggested schema a ServiceAccount or user would
			// match (service-accounts is 9000, global-default 9900).
			MatchingPrecedence:  100,
			DistinguisherMethod: &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: user}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"},
					Namespaces: []string{"*"}, ClusterScope: true,
				}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}},
		},
	}
	if _, err := fc.FlowSchemas().Create(ctx, fs, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create flow schema %s: %w", fs.Name, err)
	}
	return nil
}
