package netns

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TickEvery is how often a Chatter writes.
const TickEvery = 250 * time.Millisecond

// Chatter is one side of a chatty TCP session, like a shell printing a
// line every 250 ms: it writes a tick every TickEvery until its connection
// fails or closes, and counts the bytes it receives.
type Chatter struct {
	// Received counts the bytes read from the other side.
	Received atomic.Int64
}

// Chat starts chatting on c; c is closed and the chatter waited for when t
// ends.
func Chat(t testing.TB, c net.Conn) *Chatter { return chat(t, c, true) }

// Receive is Chat for a side that only reads, like a client watching a
// log stream: every packet on the connection then comes from the other
// side first.
func Receive(t testing.TB, c net.Conn) *Chatter { return chat(t, c, false) }

func chat(t testing.TB, c net.Conn, talk bool) *Chatter {
	ch := &Chatter{}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			ch.Received.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); c.Close(); wg.Wait() })
	if !talk {
		return ch
	}
	wg.Go(func() {
		tick := time.NewTicker(TickEvery)
		defer tick.Stop()
		for {
			if _, err := c.Write([]byte("tick\n")); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	return ch
}

// ServeChat listens on addr (host:port) inside the namespace and chats on
// every connection it accepts; their chatters arrive on the returned
// channel (four at most are kept waiting; later ones are closed). It stops
// when t ends.
func (n *NS) ServeChat(t testing.TB, addr string) <-chan *Chatter {
	t.Helper()
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n.name, err)
	}
	out := make(chan *Chatter, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if len(out) == cap(out) {
				c.Close()
				continue
			}
			out <- Chat(t, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return out
}

// Quiet reports whether neither chatter receives a byte for d: a session
// that was cut. It waits d.
func Quiet(d time.Duration, chatters ...*Chatter) (bool, []int64) {
	before := make([]int64, len(chatters))
	for i, c := range chatters {
		before[i] = c.Received.Load()
	}
	time.Sleep(d)
	got := make([]int64, len(chatters))
	quiet := true
	for i, c := range chatters {
		got[i] = c.Received.Load() - before[i]
		quiet = quiet && got[i] == 0
	}
	return quiet, got
}
