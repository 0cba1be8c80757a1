package policy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// check is one named step of the policy.
type check struct {
	id  string
	run func(*evaluation, context.Context) (CheckResult, error)
}

// checks run in this order; see Evaluate.
var checks = []check{
	{"signer", (*evaluation).signer},
	{"requester", (*evaluation).requester},
	{"request-encoding", (*evaluation).requestEncoding},
	{"subject", (*evaluation).subject},
	{"san-types", (*evaluation).sanTypes},
	{"usages", (*evaluation).usages},
	{"key", (*evaluation).key},
	{"expiration", (*evaluation).expiration},
	{"reserved", (*evaluation).reserved},
	{"apiserver", (*evaluation).apiServer},
	{"allowed-cidrs", (*evaluation).allowedCIDRs},
	{"dns-regex", (*evaluation).dnsRegex},
	{"node-exists", (*evaluation).nodeExists},
	{"san-ownership", (*evaluation).sanOwnership},
}

// evaluation carries one request through the checks. Earlier checks fill in what later ones
// need; a check whose input is missing is skipped, and the check that failed to provide it has
// already failed.
type evaluation struct {
	cfg   Config
	req   servingcsr.Request
	facts Facts
	now   time.Time

	nodeName string                   // set by requester when the username names a valid node
	csr      *x509.CertificateRequest // set by request-encoding when the request parses
	dnsNames []string                 // DNS SANs of csr, normalised by normaliseDNS
	ips      []netip.Addr             // IP SANs of csr, unmapped
	node     *Node                    // set by the first lookup of the requesting Node
	cluster  *Cluster                 // set by the first lookup of the cluster's addresses
}

// Evaluate decides one request. It runs every check that can run, in this order, and records each
// in Decision.Checks: signer, requester, request-encoding, subject, san-types, usages, key,
// expiration, reserved, apiserver, allowed-cidrs, dns-regex, node-exists, san-ownership. The decision is
// the first failed check that denies; else the first that holds; else Approve.
//
// An error means the request could not be decided (cfg is invalid or a Facts lookup failed): the
// Decision is then empty, and the caller must hold the request and retry. Evaluate never approves
// or denies on error.
func Evaluate(ctx context.Context, cfg Config, req servingcsr.Request, facts Facts, now time.Time) (Decision, error) {
	if err := cfg.Validate(); err != nil {
		return Decision{}, fmt.Errorf("invalid policy config: %w", err)
	}
	e := &evaluation{cfg: cfg, req: req, facts: facts, now: now}
	results := make([]CheckResult, 0, len(checks))
	for _, c := range checks {
		r, err := c.run(e, ctx)
		if err != nil {
			return Decision{}, fmt.Errorf("check %s: %w", c.id, err)
		}
		r.Check = c.id
		results = append(results, r)
	}

	var hold *CheckResult
	for i, r := range results {
		switch {
		case r.Outcome != Fail:
		case r.Verdict == Deny:
			return Decision{Verdict: Deny, Reason: r.Reason, Message: r.Check + ": " + r.Message, Checks: results}, nil
		case hold == nil:
			hold = &results[i]
		}
	}
	if hold != nil {
		return Decision{Verdict: Hold, Reason: hold.Reason, Message: hold.Check + ": " + hold.Message, Checks: results, Until: hold.Until}, nil
	}
	// Every skip should come with an earlier failure. Should that ever break, refuse to approve a
	// request whose SANs were not checked against its Node.
	if e.csr == nil || e.node == nil {
		return Decision{}, errors.New("no check failed, but the request was not checked in full")
	}
	return Decision{Verdict: Approve, Reason: AllChecksPassed, Message: "all checks passed", Checks: results}, nil
}

func passed(format string, args ...any) (CheckResult, error) {
	return CheckResult{Outcome: Pass, Message: fmt.Sprintf(format, args...)}, nil
}

func failed(v Verdict, r Reason, format string, args ...any) (CheckResult, error) {
	return CheckResult{Outcome: Fail, Verdict: v, Reason: r, Message: fmt.Sprintf(format, args...)}, nil
}

func skipped(why string) (CheckResult, error) {
	return CheckResult{Outcome: Skipped, Message: why}, nil
}

const (
	skipNoRequest = "skipped: the request did not parse"
	skipNoNode    = "skipped: no valid node name in the username"
)
