package netns

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCheckTestAddr(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"198.51.100.7/24", true},
		{"198.51.100.7/32", true},
		{"2001:db8::1/64", true},
		{"2001:db8:ffff::1/128", true},
		{"198.51.100.0/16", false},
		{"198.51.101.1/24", false},
		{"10.0.0.1/8", false},
		{"192.0.2.1/24", false},
		{"2001:db9::1/64", false},
		{"::ffff:198.51.100.7/128", false},
		{"fe80::1/64", false},
	} {
		err := CheckTestAddr(netip.MustParsePrefix(tc.p))
		if (err == nil) != tc.ok {
			t.Errorf("CheckTestAddr(%s) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func currentNS(t *testing.T) string {
	t.Helper()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLAN(t *testing.T) {
	Require(t)
	hostBefore, err := run("ip", "-o", "addr")
	if err != nil {
		t.Fatal(err)
	}
	lan := NewLAN(t)
	a4, a6 := netip.MustParsePrefix("198.51.100.1/24"), netip.MustParsePrefix("2001:db8::1/64")
	b4, b6 := netip.MustParsePrefix("198.51.100.2/24"), netip.MustParsePrefix("2001:db8::2/64")
	a := lan.AddHost(t, "a", a4, a6)
	b := lan.AddHost(t, "b", b4, b6)

	if a.Name() == b.Name() || !strings.Contains(a.Name(), "-a-") {
		t.Fatalf("names %q, %q", a.Name(), b.Name())
	}
	if out := a.IP(t, "-o", "addr", "show", "dev", HostDev); !strings.Contains(out, "198.51.100.1/24") || !strings.Contains(out, "2001:db8::1/64") {
		t.Fatalf("a's addresses: %s", out)
	}

	// A TCP echo across the bridge, over both families.
	var ln net.Listener
	if err := b.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":7777")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })

	before := currentNS(t)
	for _, dst := range []netip.Addr{b4.Addr(), b6.Addr()} {
		err := a.Do(func() error {
			if currentNS(t) == before {
				t.Error("Do did not switch namespace")
			}
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(dst, 7777).String(), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("hi")); err != nil {
				return err
			}
			buf := make([]byte, 2)
			_, err = io.ReadFull(c, buf)
			return err
		})
		if err != nil {
			t.Fatalf("echo to %v: %v", dst, err)
		}
	}
	// Do must restore the thread's namespace. The goroutine may have moved
	// threads after Do unlocked, so check on a locked thread again.
	if err := a.Do(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := currentNS(t); got != before {
		t.Fatalf("namespace after Do = %s, want %s", got, before)
	}

	// Commands run inside the namespace.
	if out := a.Run(t, "ip", "-o", "addr"); !strings.Contains(out, "198.51.100.1") {
		t.Fatalf("ip netns exec output: %s", out)
	}
	var buf bytes.Buffer
	cmd := a.Start(t, &buf, "sleep", "30")
	if cmd.Process == nil {
		t.Fatal("not started")
	}

	hostAfter, err := run("ip", "-o", "addr")
	if err != nil {
		t.Fatal(err)
	}
	for _, marker := range []string{"198.51.100.", "2001:db8:"} {
		if strings.Count(hostAfter, marker) > strings.Count(hostBefore, marker) {
			t.Fatalf("a test address landed in the host namespace:\n%s", hostAfter)
		}
	}
}

func TestCleanup(t *testing.T) {
	Require(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = New(t, "gone").Name()
	})
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still exists after cleanup: %v", name, err)
	}
}

func TestChat(t *testing.T) {
	ns := New(t, "chat")
	accepted := ns.ServeChat(t, "127.0.0.1:7070")
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", "127.0.0.1:7070", time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	client := Chat(t, c)
	var server *Chatter
	select {
	case server = <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("nothing accepted")
	}
	if quiet, got := Quiet(3*TickEvery, client, server); quiet || got[0] == 0 || got[1] == 0 {
		t.Fatalf("received %v over three ticks, want bytes on both sides", got)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if quiet, got := Quiet(2*TickEvery, client, server); !quiet {
		t.Fatalf("received %v after the connection closed", got)
	}
}
