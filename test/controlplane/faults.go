package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The faults a test can inject into a running control plane, besides
// RestartAPIServer and StopControllerManager: etcd killed and restarted, its
// history compacted, and every client connection cut.

// RestartEtcd kills etcd with SIGKILL, as a crash or an OOM kill would, starts
// it again on the same data directory and ports, and returns once etcd and
// then the API server are healthy again.
func (cp *ControlPlane) RestartEtcd(ctx context.Context) error {
	cp.mu.Lock()
	p := cp.procs["etcd"]
	cp.mu.Unlock()
	if p == nil {
		return errors.New("etcd is not running")
	}
	args := p.args
	p.Kill()
	if err := cp.spawn("etcd", args); err != nil {
		return err
	}
	if err := cp.waitHTTP(ctx, "etcd", cp.etcdURL()+"/health", nil); err != nil {
		return err
	}
	return cp.waitAPIServer(ctx)
}

// CompactEtcd compacts etcd's history up to its current revision and returns
// that revision. A watch the API server resumes from an older
// resourceVersion then ends with 410 Gone (unless the API server's watch
// cache serves it), and the client must list again. It goes through etcd's
// JSON gateway, so the test needs no etcd client library.
func (cp *ControlPlane) CompactEtcd(ctx context.Context) (int64, error) {
	var status struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// Any range answers with the store's current revision; key "\x00" is empty.
	if err := cp.etcdCall(ctx, "/v3/kv/range", map[string]any{"key": "AA==", "count_only": true}, &status); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(status.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", status.Header.Revision, err)
	}
	if err := cp.etcdCall(ctx, "/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil); err != nil {
		return 0, err
	}
	return rev, nil
}

// etcdCall posts req as JSON to etcd's gateway at path and decodes the answer into resp.
func (cp *ControlPlane) etcdCall(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.etcdURL()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", path, res.Status, b)
	}
	if resp == nil {
		return nil
	}
	return json.Unmarshal(b, resp)
}

// DropConnections closes every client connection to the API server at once
// (Options.Proxy must be set) and returns how many there were. Clients
// reconnect on their own; watches resume from the last resourceVersion they
// saw.
func (cp *ControlPlane) DropConnections() (int, error) {
	if cp.proxy == nil {
		return 0, errors.New("controlplane: DropConnections needs Options.Proxy")
	}
	return cp.proxy.drop(), nil
}

// proxy forwards TCP connections from a listener to the API server, byte for
// byte (TLS passes through: the API server's certificate covers the proxy's
// address), and can close all of them at once.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(listen, target string) (*proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Go(func() { p.forward(in) })
	}
}

// forward copies both ways until either side ends, then closes both.
func (p *proxy) forward(in net.Conn) {
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		in.Close() // the API server is down: the client sees its connection fail
		return
	}
	p.track(in, out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	p.untrack(in, out)
	in.Close()
	out.Close()
	<-done
}

func (p *proxy) track(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
}

func (p *proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

// drop closes every open connection, both sides, and returns how many
// client connections there were.
func (p *proxy) drop() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	n := len(p.conns) / 2
	clear(p.conns)
	return n
}

func (p *proxy) close() {
	p.ln.Close()
	p.drop()
	p.wg.Wait()
}
