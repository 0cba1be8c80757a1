package cli

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// kubeOptions are the flags that say which cluster to talk to and as whom:
// kubectl's own (genericclioptions.ConfigFlags), so `kubectl csrguard`
// takes --context, --as, --request-timeout… as kubectl does, plus the
// client's rate limits.
//
// -n/--namespace keeps csrguard's meaning: the namespace csrguard runs in,
// not the kubeconfig context's namespace.
type kubeOptions struct {
	flags *genericclioptions.ConfigFlags
	qps   float32
	burst int
}

// unlimitedQPS as --kube-api-qps turns the client-side rate limiter off, as
// client-go reads any QPS below 0: every request goes out at once, and the
// API server's Priority and Fairness queues or rejects (429) what it cannot
// take. Only -1 is accepted, so that a typo such as -300 is an error.
const unlimitedQPS = -1

// unlimitedQPSUsage ends the help of --kube-api-qps.
const unlimitedQPSUsage = "-1 turns the client-side limit off and leaves the pacing to the API server's Priority and Fairness."

// defaultNamespace is where csrguard is installed unless told otherwise.
const defaultNamespace = "csrguard"

// The help of the flags whose meaning csrguard sets, for every command.
var kubeFlagUsage = map[string]string{
	"kubeconfig": "Path to a kubeconfig file; default $KUBECONFIG, ~/.kube/config, or the in-cluster service account.",
	"context":    "The kubeconfig context to use; default the current context.",
	"namespace":  `The namespace csrguard runs in, which holds its Lease and its records (address claims, the API server's past addresses); default the pod's namespace in a pod, else "` + defaultNamespace + `".`,
}

// addFlags adds every kubectl connection flag (--kubeconfig, --context,
// --as, --server, --token, --request-timeout, …), -n and the rate limits:
// for the commands run from a laptop.
func (o *kubeOptions) addFlags(fs *pflag.FlagSet, qps float32, burst int) {
	o.flags = genericclioptions.NewConfigFlags(false)
	// csrguard asks no discovery of its own: no cache to configure.
	o.flags.CacheDir = nil
	o.add(fs, qps, burst)
}

// addControllerFlags adds --kubeconfig, --context, -n and the rate limits
// only: the controller runs in a pod, as its ServiceAccount.
func (o *kubeOptions) addControllerFlags(fs *pflag.FlagSet, qps float32, burst int) {
	o.flags = &genericclioptions.ConfigFlags{KubeConfig: ptr.To(""), Context: ptr.To(""), Namespace: ptr.To("")}
	o.add(fs, qps, burst)
	if qps == unlimitedQPS {
		fs.Lookup("kube-api-qps").Usage = "Client-side queries per second to the API server; -1 (the default) sets no client-side limit and leaves the pacing to the API server's Priority and Fairness, which queues or rejects what it cannot take: the controller makes one write per CSR and retries with backoff, so its rate follows the kubelets', and a cap only slowed a fleet-wide rotation (README, Performance)."
	}
}

func (o *kubeOptions) add(fs *pflag.FlagSet, qps float32, burst int) {
	o.flags.AddFlags(fs)
	for name, usage := range kubeFlagUsage {
		fs.Lookup(name).Usage = usage
	}
	fs.Float32Var(&o.qps, "kube-api-qps", qps, "Client-side queries per second to the API server; "+unlimitedQPSUsage)
	fs.IntVar(&o.burst, "kube-api-burst", burst, "Client-side burst of queries to the API server; unused with --kube-api-qps=-1.")
}

func (o *kubeOptions) validate() error {
	if ns := *o.flags.Namespace; ns != "" && len(validation.IsDNS1123Label(ns)) > 0 {
		return flagError("namespace", "must be a namespace name, got %q", ns)
	}
	if o.qps <= 0 && o.qps != unlimitedQPS {
		return flagError("kube-api-qps", "must be > 0, or -1 for no client-side limit, got %v", o.qps)
	}
	if o.burst < 1 {
		return flagError("kube-api-burst", "must be >= 1, got %d", o.burst)
	}
	return nil
}

// restConfig loads the client configuration, as kubectl would with the same
// flags, at csrguard's rate limits.
func (o *kubeOptions) restConfig() (*rest.Config, error) {
	loader := o.flags.ToRawKubeConfigLoader()
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, err
	}
	// With no kubeconfig, no --server and no usable in-cluster
	// configuration, kubectl falls back to http://localhost:8080. csrguard
	// says what is missing instead, before any connection is refused.
	if raw, err := loader.RawConfig(); err == nil && len(raw.Clusters) == 0 && cfg.Host == clientcmd.ClusterDefaults.Server &&
		(o.flags.APIServer == nil || *o.flags.APIServer == "") && os.Getenv("KUBERNETES_MASTER") == "" {
		return nil, fmt.Errorf("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod: %w", clientcmd.ErrEmptyConfig)
	}
	cfg.QPS, cfg.Burst = o.qps, o.burst
	cfg.UserAgent = "csrguard"
	return cfg, nil
}

// csrguardNamespace returns --namespace, the pod's namespace, or the default.
func (o *kubeOptions) csrguardNamespace() string {
	if ns := *o.flags.Namespace; ns != "" {
		return ns
	}
	if ns := podNamespace(); ns != "" {
		return ns
	}
	return defaultNamespace
}

// inCluster reports whether csrguard runs in a pod with no kubeconfig given.
func (o *kubeOptions) inCluster() bool {
	return *o.flags.KubeConfig == "" && os.Getenv("KUBECONFIG") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}

// podNamespace is the namespace csrguard runs in, when it runs in a pod.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return string(b)
	}
	return ""
}
