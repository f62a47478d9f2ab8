package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// Parked long polls. An agent's watch waits for a minute or two, and
// thousands wait at once. Waiting inside the HTTP server costs, per agent,
// the handler's goroutine and the connection's background reader (with
// stacks sized for everything the connection ever did), the connection's
// read and write buffers and the request's state: about 60 KiB. So a
// watch over HTTP/1.1 that must wait takes its connection out of the HTTP
// server (Hijack) and parks it: one small goroutine blocked reading the
// connection (which ends the wait when the agent hangs up or TCP
// keep-alive finds it dead), woken by the VM's change through the
// connection's read deadline (AgentPoll.OnChange), so no timer or channel
// of its own. The answer is written on the connection, which then goes
// back to the HTTP server (Returner) for the agent's next request.

// Returner is a listener that also hands out connections given back to it
// (Return): a parked agent's connection goes back to the HTTP server for
// its next request. It sits above TLS: the connections it returns have
// done their handshake.
type Returner struct {
	net.Listener
	back    chan net.Conn
	results chan accepted
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type accepted struct {
	c   net.Conn
	err error
}

// NewReturner returns a Returner over ln; Close closes ln.
func NewReturner(ln net.Listener) *Returner {
	r := &Returner{Listener: ln, back: make(chan net.Conn), results: make(chan accepted), closed: make(chan struct{})}
	r.wg.Go(r.acceptLoop)
	return r
}

func (r *Returner) acceptLoop() {
	for {
		c, err := r.Listener.Accept()
		select {
		case r.results <- accepted{c, err}:
		case <-r.closed:
			if c != nil {
				c.Close()
			}
			return
		}
		var te interface{ Temporary() bool }
		if err != nil && !(errors.As(err, &te) && te.Temporary()) {
			return
		}
	}
}

// Accept returns the next new or returned connection.
func (r *Returner) Accept() (net.Conn, error) {
	select {
	case a := <-r.results:
		return a.c, a.err
	case c := <-r.back:
		return c, nil
	case <-r.closed:
		return nil, net.ErrClosed
	}
}

// Return gives c back to the server, or closes it when the listener is
// closed.
func (r *Returner) Return(c net.Conn) {
	select {
	case r.back <- c:
	case <-r.closed:
		c.Close()
	}
}

// Close closes the listener and waits for its accepting goroutine.
func (r *Returner) Close() error {
	var err error
	r.once.Do(func() {
		close(r.closed)
		err = r.Listener.Close()
		r.wg.Wait()
	})
	return err
}

// parkWrite bounds writing a parked poll's answer.
const parkWrite = 10 * time.Second

// park takes the connection of r out of the HTTP server and waits for p's
// answer on it, until deadline, in a goroutine of its own; it reports
// false (and leaves the connection alone) when it cannot.
func (s *Server) park(w http.ResponseWriter, r *http.Request, p *control.AgentPoll, deadline time.Time) bool {
	if s.returns == nil || r.ProtoMajor != 1 || r.Close || p.Draining() {
		return false // a draining server answers at once (and waits for no new parked poll)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	pk := &parked{s: s, conn: conn, p: p, deadline: deadline, tls: r.TLS != nil}
	if brw.Reader.Buffered() > 0 {
		// The client sent more behind its watch (HTTP/1.1 pipelining,
		// which no agent does): answer and hang up.
		pk.closing = true
	}
	s.metrics.parked.Inc()
	s.parked.Go(func() {
		defer s.metrics.parked.Dec()
		pk.run()
	})
	return true
}

type parked struct {
	s        *Server
	conn     net.Conn
	p        *control.AgentPoll
	deadline time.Time
	tls      bool
	closing  bool

	mu    sync.Mutex
	woken bool
}

// wake ends the wait: the blocked read returns at once.
func (pk *parked) wake() {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.woken = true
	pk.conn.SetReadDeadline(time.Unix(1, 0))
}

func (pk *parked) run() {
	ctx := context.Background()
	var one [1]byte
	for {
		pk.mu.Lock()
		pk.woken = false
		pk.mu.Unlock()
		cancel := pk.p.OnChange(pk.wake)
		st, changed, err := pk.p.Wait(ctx, 0)
		if err != nil || changed || pk.closing || pk.p.Draining() || !time.Now().Before(pk.deadline) {
			cancel()
			pk.answer(st, changed, err)
			return
		}
		pk.mu.Lock()
		if !pk.woken {
			pk.conn.SetReadDeadline(pk.deadline)
		}
		pk.mu.Unlock()
		n, err := pk.conn.Read(one[:])
		cancel()
		var ne net.Error
		if n > 0 || err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			// The agent hung up (or TCP keep-alive found it gone), or
			// sent something while it should wait.
			pk.p.End()
			pk.conn.Close()
			return
		}
	}
}

// answer writes the poll's answer, as agentWatch would, and gives the
// connection back to the HTTP server (or closes it when the server stops).
func (pk *parked) answer(st jit.DesiredState, changed bool, err error) {
	pk.p.End()
	closing := pk.closing || pk.p.Draining()
	var b bufferedResponse
	b.h = http.Header{}
	b.h.Set("X-Content-Type-Options", "nosniff")
	if pk.tls {
		b.h.Set("Strict-Transport-Security", HSTS)
	}
	pk.s.answerWatch(&b, watchRequest, st, changed, err)
	resp := &http.Response{StatusCode: b.code, ProtoMajor: 1, ProtoMinor: 1, Header: b.h, Close: closing,
		ContentLength: int64(b.body.Len())}
	if b.body.Len() > 0 {
		resp.Body = io.NopCloser(&b.body)
	}
	resp.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var out bytes.Buffer // one write: one TLS record, one system call
	resp.Write(&out)
	pk.conn.SetDeadline(time.Now().Add(parkWrite))
	_, werr := pk.conn.Write(out.Bytes())
	pk.conn.SetDeadline(time.Time{})
	if werr != nil || closing {
		pk.conn.Close()
		return
	}
	pk.s.returns.Return(pk.conn)
}

// answerWatch answers a parked watch as agentWatch does.
func (s *Server) answerWatch(w http.ResponseWriter, r *http.Request, st jit.DesiredState, changed bool, err error) {
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case !changed:
		w.WriteHeader(http.StatusNoContent)
	default:
		httpio.WriteJSON(w, http.StatusOK, st)
	}
}

// watchRequest stands for a parked watch's request where answerWatch
// logs one.
var watchRequest = &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/api/v1/agent/watch"}}

// bufferedResponse collects an answer to write on a parked connection.
type bufferedResponse struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.h }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
