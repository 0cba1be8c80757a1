// Package netns gives csrguard's tests, demo and benchmark addresses that are
// not loopback, so that they run the production policy unchanged: the real
// kubelet refuses a loopback node IP, and csrguard refuses loopback SANs.
//
// Private re-runs the program in a private network namespace (CLONE_NEWNET as
// root, inside a user namespace otherwise) whose loopback device answers for
// the documentation ranges (RFC 5737, RFC 3849) and the benchmarking range
// (RFC 2544): any address in them can be listened on and dialled, and
// AddAddress assigns one to the device where a program (the kubelet) looks for
// its address on an interface. The namespace, and everything in it, ends with
// the program: nothing on the host changes, and nothing is left behind after a
// crash. Host, for the dev cluster that must stay reachable from the host,
// assigns the addresses on the host instead and removes them again.
//
// The package needs the ip command (iproute2).
package netns

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// The addresses the harness hands out.
var (
	// APIServer is where kube-apiserver listens and what it advertises
	// (TEST-NET-1).
	APIServer = netip.MustParseAddr("192.0.2.10")
	// MetricsServer is where metrics-server listens (TEST-NET-1).
	MetricsServer = netip.MustParseAddr("192.0.2.20")
	// Kubelets are the node addresses of real and simulated kubelets
	// (TEST-NET-2 and TEST-NET-3, then the IPv6 documentation prefix).
	Kubelets = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")}
	// KubeletsIPv6 are IPv6 node addresses (RFC 3849).
	KubeletsIPv6 = netip.MustParsePrefix("2001:db8::/32")
	// Bench holds the thousands of kubelets of the benchmark (RFC 2544).
	Bench = netip.MustParsePrefix("198.18.0.0/15")
)

// envInside marks the process Private started.
const envInside = "CSRGUARD_NETNS"

// localPrefixes are the ranges the namespace's loopback device answers for.
func localPrefixes() []netip.Prefix {
	return append([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), Bench, KubeletsIPv6}, Kubelets...)
}

// Inside reports whether this process runs in a namespace Private made.
func Inside() bool { return os.Getenv(envInside) == "1" }

// Private re-runs this program, with the same arguments and standard streams,
// in a private network namespace, waits for it, and returns its exit code
// with parent true. In the re-run program (Inside), it prepares the namespace
// and returns parent false: the caller then goes on with its work.
func Private() (code int, parent bool, err error) {
	if Inside() {
		return 0, false, prepare()
	}
	exe, err := os.Executable()
	if err != nil {
		return 1, true, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInside+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		// Without root, a user namespace in which we are root may create the
		// network namespace (where the kernel allows unprivileged ones).
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		return 1, true, fmt.Errorf("start %s in a private network namespace (needs root or unprivileged user namespaces): %w", exe, err)
	}
	// Ctrl-C and termination reach the child, which stops what it started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), true, nil
		}
		return exit.ExitCode(), true, nil
	}
	if err != nil {
		return 1, true, err
	}
	return 0, true, nil
}

// RunTests is TestMain's body for packages that run a control plane: under
// -short it runs setup and m here (the tests that need the network skip),
// otherwise both in a private network namespace. setup may be nil. It
// returns the exit code.
func RunTests(m *testing.M, setup func() (teardown func(), err error)) int {
	flag.Parse()
	if !testing.Short() {
		code, parent, err := Private()
		if err != nil {
			fmt.Fprintln(os.Stderr, "netns:", err)
			return 1
		}
		if parent {
			return code
		}
	}
	if setup != nil {
		teardown, err := setup()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer teardown()
	}
	return m.Run()
}

// prepare brings the loopback device up and makes it answer for the ranges.
func prepare() error {
	cmds := [][]string{{"link", "set", "lo", "up"}}
	for _, p := range localPrefixes() {
		family := "-4"
		if p.Addr().Is6() {
			family = "-6"
		}
		cmds = append(cmds, []string{family, "route", "add", "local", p.String(), "dev", "lo"})
	}
	for _, args := range cmds {
		if err := ip(args...); err != nil {
			return err
		}
	}
	// IPv4 listens on any address of a local route; IPv6 needs leave to.
	if err := os.WriteFile("/proc/sys/net/ipv6/ip_nonlocal_bind", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("allow IPv6 listeners on routed addresses: %w", err)
	}
	return nil
}

// AddAddress assigns addr to the loopback device of this namespace, for
// programs that look for their address on an interface (the kubelet checks
// its node IP so). Outside a private namespace it fails: use Host.
func AddAddress(addr netip.Addr) error {
	if !Inside() {
		return errors.New("netns: AddAddress outside a private network namespace; use Host")
	}
	err := ip("addr", "add", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", "lo")
	if err != nil && strings.Contains(err.Error(), "already assigned") || err != nil && strings.Contains(err.Error(), "File exists") {
		return nil // an earlier test of this process added it
	}
	return err
}

// hostLabel marks the addresses Host assigns on the host, so that a later run
// can remove what a crashed one left.
const hostLabel = "lo:csrguard"

// Host assigns addrs to the host's loopback device, labelled as csrguard's,
// after removing any a crashed run left there, and returns a function that
// removes them again. It needs root; the addresses are from the documentation
// ranges, which nothing on a real network uses.
func Host(addrs ...netip.Addr) (remove func(), err error) {
	RemoveHost()
	var added []netip.Addr
	remove = func() {
		for _, a := range added {
			_ = ip("addr", "del", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo")
		}
	}
	for _, a := range addrs {
		args := []string{"addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"}
		if a.Is4() {
			args = append(args, "label", hostLabel)
		}
		if err := ip(args...); err != nil {
			remove()
			return func() {}, err
		}
		added = append(added, a)
	}
	return remove, nil
}

// RemoveHost removes every address Host assigned on the host, also those a
// crashed run left.
func RemoveHost() {
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output()
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(line, hostLabel) && !strings.Contains(line, " "+hostLabel+"\\") {
			continue
		}
		_ = ip("addr", "del", f[3], "dev", "lo")
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Pool hands out addresses from prefixes in order, skipping each prefix's
// first address and its last (IPv4 broadcast). It is safe for concurrent use.
type Pool struct {
	mu       sync.Mutex
	prefixes []netip.Prefix
	next     netip.Addr
}

// NewPool returns a Pool over prefixes; with none, over Kubelets.
func NewPool(prefixes ...netip.Prefix) *Pool {
	if len(prefixes) == 0 {
		prefixes = Kubelets
	}
	return &Pool{prefixes: prefixes}
}

// Next returns the next unused address; it panics when the pool runs out.
func (p *Pool) Next() netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.prefixes) > 0 {
		pre := p.prefixes[0].Masked()
		if !p.next.IsValid() {
			p.next = pre.Addr() // the network address itself is skipped
		}
		p.next = p.next.Next()
		if pre.Contains(p.next) && (pre.Addr().Is6() || pre.Contains(p.next.Next())) {
			return p.next
		}
		p.prefixes, p.next = p.prefixes[1:], netip.Addr{}
	}
	panic("netns: address pool exhausted")
}
