package controlplane

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyDrop: the proxy forwards bytes both ways, and drop cuts every
// connection, which the client sees end; a new connection works again.
func TestProxyDrop(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := startProxy("127.0.0.1:0", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	roundTrip := func(c net.Conn) string {
		t.Helper()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return line
	}
	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := roundTrip(c); got != "ping\n" {
		t.Fatalf("through the proxy: got %q, want ping", got)
	}
	if n := p.drop(); n != 1 {
		t.Errorf("drop() = %d connections, want 1", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read after drop succeeded, want the connection closed")
	}
	again, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got := roundTrip(again); got != "ping\n" {
		t.Errorf("after drop: got %q, want ping", got)
	}
}
