package cli

import (
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestKubeRestConfigRateLimits checks that --kube-api-qps and --kube-api-burst reach the client
// configuration as given, -1 included: client-go builds no rate limiter for a QPS below 0.
func TestKubeRestConfigRateLimits(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://192.0.2.1:6443"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		wantQPS   float32
		wantBurst int
	}{
		{"defaults", nil, -1, 600},
		{"set", []string{"--kube-api-qps=50", "--kube-api-burst=70"}, 50, 70},
		{"capped", []string{"--kube-api-qps=300"}, 300, 600},
		{"unlimited", []string{"--kube-api-qps=-1"}, -1, 600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o kubeOptions
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.addControllerFlags(fs, unlimitedQPS, 600)
			if err := fs.Parse(append([]string{"--kubeconfig=" + kubeconfig}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if err := o.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			cfg, err := o.restConfig()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.QPS != tc.wantQPS || cfg.Burst != tc.wantBurst {
				t.Errorf("QPS, Burst = %v, %d; want %v, %d", cfg.QPS, cfg.Burst, tc.wantQPS, tc.wantBurst)
			}
			// What the flag is for: no client-side limiter at -1, one otherwise.
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cs.CoreV1().RESTClient().GetRateLimiter() == nil, tc.wantQPS < 0; got != want {
				t.Errorf("no rate limiter = %v, want %v", got, want)
			}
		})
	}
}
