package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/netns"
)

// The probe phase measures what csrguard's kubelet monitor costs: every
// --probe-interval the leader TLS-handshakes every Node's kubelet. Its nodes
// are real Nodes on a fresh control plane whose kubelets are stand-ins in this
// process: one TLS listener per node that completes the handshake and nothing
// else, which is all of a kubelet the probe touches.

const (
	// kubeletPort is every node's status.daemonEndpoints.kubeletEndpoint.Port,
	// and where the stand-ins listen.
	kubeletPort = 10250
	// maxProbeNodes is how many addresses standInAddr can hand out.
	maxProbeNodes = 1<<17 - 2
)

// standInAddr is node i's InternalIP in the probe phase, the (i+1)th address
// of the benchmarking range 198.18.0.0/15 (netns.Bench): the benchmark runs
// in a private network namespace whose loopback device answers for the whole
// range, so each stand-in listens on its own address at the real kubelet port
// without configuring an interface.
func standInAddr(i int) netip.Addr {
	base := netns.Bench.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(i+1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// probeFileLimit is how many descriptors this process needs for n stand-ins
// probed concurrency at a time: a listener per node, plus the connections
// being probed (both ends: csrguard's side is its own process, but doctor's
// probes come from it too), plus slack for the control-plane clients and the
// runtime. The idle API server connections the nodes' clients keep after
// registering are closed first (closeIdle): at 10,000 nodes they would
// otherwise need another 10,000.
func probeFileLimit(n, concurrency int) uint64 {
	return uint64(n + 2*concurrency + 1024)
}

// openFiles counts this process's open descriptors.
func openFiles() (int, error) {
	fds, err := os.ReadDir("/proc/self/fd")
	return len(fds), err
}

// softFileLimit returns the soft RLIMIT_NOFILE to set for need descriptors:
// cur when it suffices, else need, which only root may raise above hard.
func softFileLimit(cur, hard, need uint64) (uint64, error) {
	switch {
	case cur >= need:
		return cur, nil
	case hard < need:
		return 0, fmt.Errorf("the probe phase needs %d open files but the hard RLIMIT_NOFILE is %d: raise it (ulimit -Hn) or lower --probe-nodes", need, hard)
	}
	return need, nil
}

// raiseFileLimit makes sure this process, and csrguard after it, may open
// need descriptors.
func raiseFileLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	soft, err := softFileLimit(lim.Cur, lim.Max, need)
	if err != nil {
		return err
	}
	lim.Cur = soft
	// Set it even when unchanged. Go raises its own soft limit at start-up
	// but restores the original in processes it starts; an explicit
	// Setrlimit is what lets csrguard inherit this one. (csrguard, a Go
	// program, would also raise its own; it needs only about
	// --probe-concurrency descriptors for probes.)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("set RLIMIT_NOFILE to %d: %w", soft, err)
	}
	return nil
}

// standIns are the TLS side of n kubelets: one listener per node at its
// InternalIP and the kubelet port, each serving its own certificate.
type standIns struct {
	listeners []net.Listener
	wg        sync.WaitGroup

	// accepted counts connections; failed counts handshakes that failed and
	// accept errors. The probe phase waits on these rather than on
	// csrguard's /metrics, since each scrape costs csrguard CPU.
	accepted, failed atomic.Int64
	// lastAccept is when the last connection came, in Unix nanoseconds.
	lastAccept atomic.Int64
}

// startStandIns issues the stand-ins' certificates and starts listening.
func startStandIns(n int, addr func(int) netip.Addr) (*standIns, error) {
	certs, err := standInCerts(n, addr)
	if err != nil {
		return nil, err
	}
	s := &standIns{}
	for i := range n {
		at := netip.AddrPortFrom(addr(i), kubeletPort).String()
		l, err := net.Listen("tcp", at)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listen at %s as %s's kubelet: %w", at, nodeName(i), err)
		}
		s.listeners = append(s.listeners, l)
		// The defaults of a Go TLS server, as the kubelet's is: TLS 1.3 with
		// the hybrid post-quantum key exchange csrguard's client offers.
		cfg := &tls.Config{Certificates: []tls.Certificate{certs[i]}, MinVersion: tls.VersionTLS12}
		s.wg.Go(func() { s.serve(l, cfg) })
	}
	return s, nil
}

func (s *standIns) serve(l net.Listener, cfg *tls.Config) {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, most likely: a probe will fail and the
			// phase will say so; keep listening for the next.
			s.failed.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// When first, so that a count seen to grow never meets the time
		// of the connection before.
		s.lastAccept.Store(time.Now().UnixNano())
		s.accepted.Add(1)
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			tc := tls.Server(c, cfg)
			if err := tc.Handshake(); err != nil {
				s.failed.Add(1)
				return
			}
			// Wait for the prober to hang up, as a kubelet waiting for a
			// request would, so closing is the prober's ordinary close.
			_, _ = io.Copy(io.Discard, tc)
		}()
	}
}

// quietFor reports whether no connection came in the last d.
func (s *standIns) quietFor(d time.Duration) bool {
	return time.Since(time.Unix(0, s.lastAccept.Load())) > d
}

// close stops listening; connections still open end with their prober or
// their deadline.
func (s *standIns) close() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
	s.wg.Wait()
}

// standInCerts issues each stand-in its own serving certificate from a
// throwaway CA, shaped as the kubelet-serving signer issues them to kubelets:
// ECDSA P-256, CN system:node:NAME, O system:nodes, the Node's Hostname and
// InternalIP as SANs. Issuing 2,000 takes well under a second; in exchange
// every probe parses a distinct certificate whose SANs match its Node, as
// with real kubelets, rather than one shared certificate that matches none.
func standInCerts(n int, addr func(int) netip.Addr) ([]tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench-kubelet-serving-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create stand-in CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	certs := make([]tls.Certificate, n)
	for i := range n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		name := nodeName(i)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(int64(i) + 2),
			Subject:      pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
			DNSNames:     []string{name},
			IPAddresses:  []net.IP{net.IP(addr(i).AsSlice())},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("issue %s's stand-in certificate: %w", name, err)
		}
		// The chain a kubelet serves: its leaf only.
		certs[i] = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	return certs, nil
}

// sweepSample is csrguard's state just after a sweep was seen to end.
type sweepSample struct {
	probe probeScrape
	usage procUsage
	// scrapes is how many times the benchmark had scraped csrguard's
	// /metrics while watching for this sweep's end.
	scrapes int
}

// benchProbes runs the probe phase on a fresh control plane.
func benchProbes(ctx context.Context, o options) (*probeResult, error) {
	dir := filepath.Join(o.dir, "probe")
	// Fresh every time: etcd data from an earlier run would meet fresh PKI.
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := raiseFileLimit(probeFileLimit(o.probeNodes, o.probeConcurrency)); err != nil {
		return nil, err
	}
	start := time.Now()
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	defer func() { _ = cp.Stop() }()
	fmt.Printf("control plane ready in %s (logs in %s)\n", time.Since(start).Round(100*time.Millisecond), filepath.Join(dir, "logs"))

	nodes, err := registerNodes(ctx, cp, o.probeNodes, o.clients, standInAddr)
	if err != nil {
		return nil, err
	}
	closeIdle(nodes)
	if open, err := openFiles(); err == nil {
		fmt.Printf("%d descriptors open before the stand-ins start\n", open)
	}
	start = time.Now()
	kubelets, err := startStandIns(o.probeNodes, standInAddr)
	if err != nil {
		return nil, err
	}
	defer kubelets.close()
	fmt.Printf("%d kubelet stand-ins listening at %s–%s:%d in %s\n", o.probeNodes,
		standInAddr(0), standInAddr(o.probeNodes-1), kubeletPort, time.Since(start).Round(10*time.Millisecond))

	// Stopped before the stand-ins close (defers run last first), so no
	// probe meets a closed listener.
	proc, ep, err := startApprover(ctx, cp, o, "csrguard", dir,
		"--probe-interval="+o.probeInterval.String(),
		"--probe-concurrency="+strconv.Itoa(o.probeConcurrency))
	if err != nil {
		return nil, err
	}
	defer func() { _ = proc.Stop() }()

	samples, err := watchSweeps(ctx, o, proc, ep, kubelets)
	logPath := filepath.Join(dir, "logs", "csrguard.log")
	if err != nil {
		return nil, fmt.Errorf("%w; csrguard log: %s", err, logPath)
	}
	// Right after a sweep, well before the next, so nothing else runs.
	scrapeCPU, err := scrapeCost(ctx, proc, ep)
	if err != nil {
		return nil, err
	}
	if f := kubelets.failed.Load(); f > 0 {
		fmt.Printf("stand-ins: %d failed handshakes or accepts\n", f)
	}
	first, last := samples[0], samples[len(samples)-1]
	r := &probeResult{
		nodes: o.probeNodes, interval: o.probeInterval, concurrency: o.probeConcurrency,
		cpu: last.usage.cpu - first.usage.cpu,
		probes: histogram{
			sum:   last.probe.probes.sum - first.probe.probes.sum,
			count: last.probe.probes.count - first.probe.probes.count,
		},
		results: last.probe.results, sansMatch: last.probe.sansMatch,
		peakRSSMB: last.usage.peakRSSMB, scrapeCPU: scrapeCPU,
	}
	for i, s := range samples {
		r.sweeps = append(r.sweeps, s.probe.sweepDuration)
		if i > 0 { // the first sample opens the CPU window
			r.scrapes += s.scrapes
		}
	}
	if ok := r.results["ok"]; ok != r.nodes {
		return r, fmt.Errorf("%d of %d kubelets probed ok after the last sweep (results %v); csrguard log: %s", ok, r.nodes, r.results, logPath)
	}
	if err := timeDoctor(ctx, o, cp, dir, r); err != nil {
		return r, err
	}
	return r, nil
}

// timeDoctor runs `csrguard doctor` against the same cluster, as an operator
// would from a laptop next to it: it lists every Node and CSR and probes every
// kubelet stand-in. It records the wall time and whether progress was shown.
func timeDoctor(ctx context.Context, o options, cp *controlplane.ControlPlane, dir string, r *probeResult) error {
	kubeconfig := filepath.Join(dir, "doctor.kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, cp.AdminConfig()); err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.csrguard, "doctor", "--kubeconfig="+kubeconfig, "-o", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r.doctorTime = time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) { // findings exit non-zero; that is fine here
		return fmt.Errorf("csrguard doctor: %w: %s", err, stderr.String())
	}
	r.doctorProgress = strings.Contains(stderr.String(), "probed ")
	var report struct {
		Summary struct {
			Nodes        int            `json:"nodes"`
			ProbeResults map[string]int `json:"probeResults"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		return fmt.Errorf("csrguard doctor -o json: %w", err)
	}
	r.doctorNodes = report.Summary.Nodes
	for _, n := range report.Summary.ProbeResults {
		r.doctorProbed += n
	}
	return nil
}

// watchSweeps waits for --probe-sweeps sweeps to end and samples csrguard
// as each does. A sweep that ended before watching began is not counted: its
// end was not seen, so the CPU time at its end is unknown.
func watchSweeps(ctx context.Context, o options, proc *controlplane.Process, ep endpoints, kubelets *standIns) ([]sweepSample, error) {
	s, err := scrapeMetrics(ctx, ep.metrics)
	if err != nil {
		return nil, fmt.Errorf("scrape csrguard metrics: %w", err)
	}
	lastEnd := s.probe.sweepEnd
	// base is how many connections the stand-ins had when the last sweep
	// seen ended; the next sweep has ended its probes at base + nodes.
	base := int64(0)
	if lastEnd != 0 {
		base = kubelets.accepted.Load()
	}
	// A sweep starts at most 1.1 intervals after the last ended (the
	// jitter), and --timeout bounds the sweep itself.
	timeout := o.probeInterval*11/10 + o.timeout
	var samples []sweepSample
	for len(samples) < o.probeSweeps {
		fmt.Printf("  waiting for sweep %d/%d\n", len(samples)+1, o.probeSweeps)
		// First watch the stand-ins, which costs csrguard nothing: the
		// sweep's probes are over once every node was reached, or once
		// connections stop coming after some did (should a probe never
		// arrive).
		err := pollEvery(ctx, 50*time.Millisecond, timeout, func() (bool, error) {
			if proc.Exited() {
				return false, fmt.Errorf("csrguard exited: %w", proc.Err())
			}
			a := kubelets.accepted.Load()
			return a >= base+int64(o.probeNodes) || (a > base && kubelets.quietFor(time.Second)), nil
		})
		if err != nil {
			return samples, fmt.Errorf("sweep %d: probes: %w", len(samples)+1, err)
		}
		// Then scrape until csrguard publishes the sweep's end: only while
		// it exports the results, and only twice a second, since each
		// scrape costs csrguard CPU (tens of ms at 2,000 nodes) that the
		// measurement charges to the probes. Seeing the end up to half a
		// second late costs nothing: csrguard is idle by then.
		scrapes := 0
		err = pollEvery(ctx, 500*time.Millisecond, timeout, func() (bool, error) {
			s, err := scrapeMetrics(ctx, ep.metrics)
			if err != nil {
				return false, fmt.Errorf("scrape csrguard metrics: %w", err)
			}
			scrapes++
			if s.probe.sweepEnd == lastEnd {
				return false, nil
			}
			u, err := readProcUsage(proc.Pid())
			if err != nil {
				return false, fmt.Errorf("read csrguard resource usage: %w", err)
			}
			samples = append(samples, sweepSample{probe: s.probe, usage: u, scrapes: scrapes})
			lastEnd = s.probe.sweepEnd
			return true, nil
		})
		if err != nil {
			return samples, fmt.Errorf("sweep %d: end: %w", len(samples)+1, err)
		}
		base = kubelets.accepted.Load()
		got := samples[len(samples)-1]
		fmt.Printf("  sweep %d/%d took %s: results %v, SANs match on %d; csrguard CPU so far %.2f s; seen to end after %d scrape(s)\n",
			len(samples), o.probeSweeps, got.probe.sweepDuration.Round(time.Millisecond), got.probe.results, got.probe.sansMatch, got.usage.cpu.Seconds(), scrapes)
	}
	return samples, nil
}

// scrapeCost is csrguard's CPU time per /metrics scrape at this many nodes,
// from back-to-back scrapes, so the scrapes watchSweeps made can be told
// apart from the probes in the CPU time it measured.
func scrapeCost(ctx context.Context, proc *controlplane.Process, ep endpoints) (time.Duration, error) {
	// Enough that 10 ms clock ticks are a small error.
	const n = 20
	before, err := readProcUsage(proc.Pid())
	if err != nil {
		return 0, fmt.Errorf("read csrguard resource usage: %w", err)
	}
	for range n {
		if _, err := scrapeMetrics(ctx, ep.metrics); err != nil {
			return 0, fmt.Errorf("scrape csrguard metrics: %w", err)
		}
	}
	after, err := readProcUsage(proc.Pid())
	if err != nil {
		return 0, fmt.Errorf("read csrguard resource usage: %w", err)
	}
	return (after.cpu - before.cpu) / n, nil
}
