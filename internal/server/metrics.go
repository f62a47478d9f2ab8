package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	parked   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ajar_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ajar_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 35},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ajar_http_requests_in_flight", Help: "HTTP requests being served, agents' long polls that wait inside the HTTP server included.",
		}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ajar_agent_watches_parked", Help: "Agents' long polls waiting on connections parked outside the HTTP server: the agents connected to this server.",
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.parked, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (flushes).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe serves r through next and records it under its route pattern.
func (m *metrics) observe(w http.ResponseWriter, r *http.Request, next http.Handler) {
	start := time.Now()
	m.inFlight.Inc()
	defer m.inFlight.Dec()
	sw := &statusWriter{ResponseWriter: w}
	next.ServeHTTP(sw, r)
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	m.requests.WithLabelValues(route, methodLabel(r.Method), codeLabel(sw.status)).Inc()
	m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// methodLabel is the method label of a request: a method of RFC 9110 (or
// PATCH), else "other". Labels come from a closed set, so that no request
// can add series of its own.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "other"
}

// codeLabel is the status label: a status code of 100 to 599, else "other".
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// serveMetrics serves the metrics to readers of every group (a monitoring
// token: a user with role reader in "*").
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if !a.Can(jit.PermRead, "") {
		return jit.Errorf(jit.EForbidden, "%s may not read metrics (role reader in every group needed)", a.Name())
	}
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}
