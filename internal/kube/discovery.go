package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
)

// SignerDefaultLifetime is kube-controller-manager's default
// --cluster-signing-duration: a kubelet-serving certificate requested without
// expirationSeconds lives this long, so the API server's addresses are
// remembered at least this long after they were last seen.
const SignerDefaultLifetime = 8760 * time.Hour

// ClusterDiscovery keeps the API server's identity and the service CIDRs
// current (see Discover), and remembers every API server address and name it
// ever found in a history.Store for Retention after it was last seen, so that
// one missing from the EndpointSlice for a while (an API server restarting,
// or not a Node) is not handed to a node in that window, across restarts and
// leader changes too. It reads every interval rather than watching: these
// change rarely. Until the record is read and the first discovery succeeds,
// Cluster returns an error and every CSR is held.
type ClusterDiscovery struct {
	reader    client.Reader
	apiServer *rest.Config
	store     *history.Store
	static    policy.Cluster
	interval  time.Duration
	retention time.Duration
	clock     clock.PassiveClock
	errs      *metrics.Metrics

	mu       sync.Mutex
	identity history.Identity // nil until read from the store
	current  *policy.Cluster
	lastErr  error
	// noServiceCIDRAPI is whether the last discovery found no ServiceCIDR
	// API; nil before the first.
	noServiceCIDRAPI *bool
}

// DiscoveryConfig configures a ClusterDiscovery.
type DiscoveryConfig struct {
	// Reader reads uncached; APIServer is how csrguard reaches the API server
	// (its certificate and host are sources of its identity).
	Reader    client.Reader
	APIServer *rest.Config
	// Store remembers what was discovered; Static is added from flags.
	Store  *history.Store
	Static policy.Cluster
	// Interval is how often to discover; Retention how long an address or
	// name is remembered after it was last seen.
	Interval, Retention time.Duration
	Clock               clock.PassiveClock
	Metrics             *metrics.Metrics
}

// NewClusterDiscovery returns a discovery configured by cfg.
func NewClusterDiscovery(cfg DiscoveryConfig) *ClusterDiscovery {
	return &ClusterDiscovery{
		reader: cfg.Reader, apiServer: cfg.APIServer, store: cfg.Store, static: cfg.Static,
		interval: cfg.Interval, retention: cfg.Retention, clock: cfg.Clock, errs: cfg.Metrics,
	}
}

// Cluster returns the API server's identity (found now, remembered and
// configured) and the service CIDRs, or an error before the first successful
// discovery.
func (d *ClusterDiscovery) Cluster(context.Context) (policy.Cluster, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current == nil {
		return policy.Cluster{}, fmt.Errorf("API server addresses and service CIDRs not discovered yet: %w", errors.Join(d.lastErr, errNotYet))
	}
	return *d.current, nil
}

var errNotYet = errors.New("discovery pending")

// Start refreshes until ctx ends; it is a manager.Runnable.
func (d *ClusterDiscovery) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("cluster-discovery")
	var last policy.Cluster
	for {
		c, err := d.Refresh(ctx)
		if err != nil {
			// Keep the last good value: a transient error must not un-reserve
			// the API server's addresses.
			logger.Error(err, "Failed to discover API server addresses and service CIDRs")
		} else if !slices.Equal(c.APIServerAddresses, last.APIServerAddresses) || !slices.Equal(c.APIServerNames, last.APIServerNames) ||
			!slices.Equal(c.ServiceCIDRs, last.ServiceCIDRs) {
			logger.Info("Reserved the API server's identity and the service CIDRs", "apiServerAddresses", c.APIServerAddresses,
				"apiServerNames", c.APIServerNames, "serviceCIDRs", c.ServiceCIDRs)
			last = c
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.interval):
		}
	}
}

// NeedLeaderElection is false: standby replicas keep facts warm for explain
// and a fast takeover.
func (d *ClusterDiscovery) NeedLeaderElection() bool { return false }

// Refresh discovers once, records what it found and stores the result.
func (d *ClusterDiscovery) Refresh(ctx context.Context) (policy.Cluster, error) {
	c, err := d.refresh(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErr = err
	if err != nil {
		return policy.Cluster{}, err
	}
	d.current = &c
	return c, nil
}

func (d *ClusterDiscovery) refresh(ctx context.Context) (policy.Cluster, error) {
	d.mu.Lock()
	identity := d.identity
	d.mu.Unlock()
	if identity == nil {
		// Without the record, addresses the API server had before are unknown:
		// deciding now could hand one to a node.
		loaded, err := d.store.LoadIdentity(ctx)
		if err != nil {
			d.errs.Errors.WithLabelValues("history").Inc()
			return policy.Cluster{}, fmt.Errorf("read the API server's remembered addresses: %w", err)
		}
		identity = loaded
	}
	c, found, err := Discover(ctx, d.reader, d.apiServer)
	if err != nil {
		return policy.Cluster{}, err
	}
	d.noteServiceCIDRAPI(ctx, found.NoServiceCIDRAPI)
	seen := found.Sources
	for _, a := range d.static.APIServerAddresses {
		seen[a.String()] = append(seen[a.String()], SourceFlag)
	}
	now := d.clock.Now()
	changed := identity.Observe(seen, now)
	changed = identity.Expire(now, d.retention) || changed
	if changed {
		merged, err := d.store.SaveIdentity(ctx, identity)
		if err != nil {
			// What we know is in memory and still protects; the next refresh
			// retries the write.
			d.errs.Errors.WithLabelValues("history").Inc()
			log.FromContext(ctx).Error(err, "Failed to record the API server's addresses; keeping them in memory")
		} else {
			identity = merged
		}
	}
	d.mu.Lock()
	d.identity = identity
	d.mu.Unlock()

	return Merge(c, identity, d.static), nil
}

// noteServiceCIDRAPI says once, when it is first seen and whenever it
// changes, that the API server serves no ServiceCIDR objects, and keeps
// csrguard_servicecidr_api_missing current. Without the API csrguard goes on
// with the kubernetes Service's IPs and --service-cidrs: a Service IP outside
// both is not known to be one, which only the operator can fix.
func (d *ClusterDiscovery) noteServiceCIDRAPI(ctx context.Context, missing bool) {
	d.mu.Lock()
	changed := d.noServiceCIDRAPI == nil && missing || d.noServiceCIDRAPI != nil && *d.noServiceCIDRAPI != missing
	d.noServiceCIDRAPI = &missing
	d.mu.Unlock()
	if missing {
		d.errs.ServiceCIDRAPIMissing.Set(1)
	} else {
		d.errs.ServiceCIDRAPIMissing.Set(0)
	}
	if !changed {
		return
	}
	logger := log.FromContext(ctx).WithName("cluster-discovery")
	switch {
	case !missing:
		logger.Info("Found the ServiceCIDR API; reading the service range from it again")
	case len(d.static.ServiceCIDRs) == 0:
		logger.Info("The API server serves no ServiceCIDR objects and --service-cidrs is not set: only the kubernetes Service's own IPs are reserved as Service IPs; set --service-cidrs to kube-apiserver's --service-cluster-ip-range")
	default:
		logger.Info("The API server serves no ServiceCIDR objects: the service range is taken from --service-cidrs", "serviceCIDRs", d.static.ServiceCIDRs)
	}
}
