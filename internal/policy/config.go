package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the parsed policy configuration. Flags are the CLI's; this holds their parsed values.
type Config struct {
	// MaxExpiration is the longest spec.expirationSeconds allowed.
	MaxExpiration time.Duration
	// MaxSANs is the most DNS and IP SANs one request may hold, at most MaxSANsLimit.
	MaxSANs int
	// ClusterDomain is the cluster's DNS domain; names in it are reserved.
	ClusterDomain string
	// AllowedNodeCIDRs, when set, must each contain every IP SAN; empty allows any address that
	// is not reserved.
	AllowedNodeCIDRs []netip.Prefix
	// DNSNameRegex, when set, must match every (lowercased) DNS SAN in full. Anchor it when
	// compiling (^(?:re)$); Evaluate also requires the leftmost match to span the whole name, so
	// an unanchored pattern can only deny more.
	DNSNameRegex *regexp.Regexp
	// ExtraReservedNames are DNS names always denied, compared case-insensitively.
	ExtraReservedNames []string
	// ExtraReservedCIDRs are address ranges always denied.
	ExtraReservedCIDRs []netip.Prefix
	// AddressSettleTime is how long after its creation a request whose SANs do not match the
	// Node addresses is held rather than denied, because the address caches may lag the API
	// server.
	AddressSettleTime time.Duration
	// ControlPlaneLabels mark control-plane Nodes, as "key" (any value) or "key=value": such a
	// Node may hold its own API server addresses and names. Each key must be one that the
	// NodeRestriction admission plugin forbids a kubelet to set on itself (see Validate).
	ControlPlaneLabels []string
	// InsecureAllowLoopback lets loopback SANs (127.0.0.0/8, ::1) through the reserved-address
	// check. It is for tests with simulated kubelets on loopback only: a loopback serving
	// certificate signed by a CA pods trust lets its holder impersonate local services.
	InsecureAllowLoopback bool
}

// MaxSANsLimit bounds MaxSANs: a request with that many SANs of the longest DNS names and
// an 8192-bit RSA key still fits servingcsr.MaxRequestBytes. A kubelet asks for a handful.
const MaxSANsLimit = 32

// DefaultConfig returns the configuration csrguard runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		MaxExpiration:      8760 * time.Hour,
		MaxSANs:            20,
		ClusterDomain:      "cluster.local",
		AddressSettleTime:  time.Minute,
		ControlPlaneLabels: []string{ControlPlaneLabel, LegacyControlPlaneLabel},
	}
}

// Validate reports the first field of c that holds an unusable value.
func (c Config) Validate() error {
	if c.MaxExpiration <= 0 {
		return fmt.Errorf("MaxExpiration must be > 0, got %v", c.MaxExpiration)
	}
	if c.MaxSANs <= 0 || c.MaxSANs > MaxSANsLimit {
		return fmt.Errorf("MaxSANs must be 1 to %d, got %d", MaxSANsLimit, c.MaxSANs)
	}
	if errs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(errs) > 0 {
		return fmt.Errorf("ClusterDomain must be a lowercase DNS name without a trailing dot, got %q: %s", c.ClusterDomain, strings.Join(errs, "; "))
	}
	if c.AddressSettleTime < 0 {
		return fmt.Errorf("AddressSettleTime must be >= 0, got %v", c.AddressSettleTime)
	}
	if slices.Contains(c.ExtraReservedNames, "") {
		return errors.New("ExtraReservedNames must not hold an empty name")
	}
	for _, sel := range c.ControlPlaneLabels {
		if err := ValidateControlPlaneLabel(sel); err != nil {
			return fmt.Errorf("ControlPlaneLabels entry %q is unusable: %w", sel, err)
		}
	}
	for _, p := range c.AllowedNodeCIDRs {
		if !p.IsValid() {
			return fmt.Errorf("AllowedNodeCIDRs must hold valid prefixes, got %v", p)
		}
	}
	for _, p := range c.ExtraReservedCIDRs {
		if !p.IsValid() {
			return fmt.Errorf("ExtraReservedCIDRs must hold valid prefixes, got %v", p)
		}
	}
	return nil
}
