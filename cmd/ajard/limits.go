package main

import (
	"flag"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/server"
)

// limits bound what clients can hold of ajard: connections, header size,
// and how long a header, a body and an idle connection may take (README,
// "Limits").
type limits struct {
	maxConns                                int
	maxHeaderBytes                          int
	bodyBudget                              int64
	headerTimeout, bodyTimeout, idleTimeout time.Duration
}

func (l *limits) flags(fs *flag.FlagSet) {
	fs.IntVar(&l.maxConns, "max-conns", 1024, "most client connections open at once; more wait to be accepted (each agent holds one)")
	fs.IntVar(&l.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and header accepted, in bytes")
	fs.Int64Var(&l.bodyBudget, "max-body-bytes-in-flight", server.DefaultBodyBudget, "most request body bytes read and held at once, over all requests; more wait (at most --body-timeout, then 503)")
	fs.DurationVar(&l.headerTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's header")
	fs.DurationVar(&l.bodyTimeout, "body-timeout", server.DefaultBodyTimeout, "how long a client may take to send a request's body (the wait of an agent's long poll, after its body, is not bounded by it)")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
}

func (l *limits) check() error {
	switch {
	case l.maxConns < 1:
		return keyErrorf("max-conns", "must be at least 1, got %d", l.maxConns)
	case l.maxHeaderBytes < 4<<10 || l.maxHeaderBytes > 1<<20:
		return keyErrorf("max-header-bytes", "must be from 4096 to 1048576, got %d", l.maxHeaderBytes)
	case l.bodyBudget < httpio.MaxBody:
		return keyErrorf("max-body-bytes-in-flight", "must be at least %d (one largest body), got %d", httpio.MaxBody, l.bodyBudget)
	case l.headerTimeout <= 0:
		return keyErrorf("read-header-timeout", "must be positive, got %s", l.headerTimeout)
	case l.bodyTimeout <= 0:
		return keyErrorf("body-timeout", "must be positive, got %s", l.bodyTimeout)
	case l.idleTimeout <= 0:
		return keyErrorf("idle-timeout", "must be positive, got %s", l.idleTimeout)
	}
	return nil
}

// apply sets the limits on srv and api and returns ln limited to
// maxConns connections at once. There is no ReadTimeout or WriteTimeout:
// they would cut the agents' long polls; bodies are bounded by the API's
// BodyTimeout instead.
func (l *limits) apply(srv *http.Server, api *server.Server, ln net.Listener) net.Listener {
	srv.ReadHeaderTimeout = l.headerTimeout
	srv.IdleTimeout = l.idleTimeout
	srv.MaxHeaderBytes = l.maxHeaderBytes
	api.BodyTimeout = l.bodyTimeout
	api.LimitBodies(l.bodyBudget)
	return netutil.LimitListener(ln, l.maxConns)
}
