package cli

import (
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeOptions are the usual flags that say which cluster to talk to.
type kubeOptions struct {
	kubeconfig string
	context    string
	namespace  string
	qps        float32
	burst      int
}

// defaultNamespace is where csrguard is installed unless told otherwise.
const defaultNamespace = "csrguard"

func (o *kubeOptions) addFlags(fs *pflag.FlagSet, qps float32, burst int) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig file; default $KUBECONFIG, ~/.kube/config, or the in-cluster service account.")
	fs.StringVar(&o.context, "context", "", "The kubeconfig context to use; default the current context.")
	fs.StringVarP(&o.namespace, "namespace", "n", "", `The namespace csrguard runs in, which holds its Lease and its records (address claims, the API server's past addresses); default the pod's namespace in a pod, else "`+defaultNamespace+`".`)
	fs.Float32Var(&o.qps, "kube-api-qps", qps, "Client-side queries per second to the API server.")
	fs.IntVar(&o.burst, "kube-api-burst", burst, "Client-side burst of queries to the API server.")
}

func (o *kubeOptions) validate() error {
	if errs := validation.IsDNS1123Label(o.namespace); o.namespace != "" && len(errs) > 0 {
		return flagError("namespace", "must be a namespace name, got %q", o.namespace)
	}
	if o.qps <= 0 {
		return flagError("kube-api-qps", "must be > 0, got %v", o.qps)
	}
	if o.burst < 1 {
		return flagError("kube-api-burst", "must be >= 1, got %d", o.burst)
	}
	return nil
}

// restConfig loads the client configuration.
func (o *kubeOptions) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = o.qps, o.burst
	cfg.UserAgent = "csrguard"
	return cfg, nil
}

// csrguardNamespace returns --namespace, the pod's namespace, or the default.
func (o *kubeOptions) csrguardNamespace() string {
	if o.namespace != "" {
		return o.namespace
	}
	if ns := podNamespace(); ns != "" {
		return ns
	}
	return defaultNamespace
}

// inCluster reports whether csrguard runs in a pod with no kubeconfig given.
func (o *kubeOptions) inCluster() bool {
	return o.kubeconfig == "" && os.Getenv("KUBECONFIG") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != ""
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
