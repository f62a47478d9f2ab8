// Package azureapi is ajard's Azure-compatible JIT API: the
// Microsoft.Security/locations/jitNetworkAccessPolicies resource of
// Defender for Cloud at api-version 2020-01-01, so that Azure's JIT clients
// (the Azure SDKs, scripts calling the REST API) work against ajar by
// changing only the endpoint. It serves, under /subscriptions/{sub}:
//
//	GET    /providers/Microsoft.Security/jitNetworkAccessPolicies
//	GET    /providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies
//	GET    /resourceGroups/{rg}/providers/Microsoft.Security/jitNetworkAccessPolicies
//	GET    /resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies
//	GET    /resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}
//	PUT    (same)                                                             200 and the policy
//	DELETE (same)                                                             200, or 204 when there was none
//	POST   .../jitNetworkAccessPolicies/{name}/initiate                      202 and the request
//
// Lists page with nextLink ($top sets the page size, $skipToken the
// position). Paths are matched case-insensitively, as ARM does; every
// call needs api-version=2020-01-01 and an ajar API token as its bearer
// token. Errors are ARM's {"error":{"code","message","target"}}.
//
// Mapping: the subscription must be one ajard manages; a resource group is
// an ajar group (case-insensitively); the location is a VM's
// "azure.location" label, else ajard's default location. VM ids are ARM
// ids: an Azure VM's own, and for other VMs
// /subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}
// in the first managed subscription. ajar keeps one policy per VM; the
// Azure policy it belongs to is the VM's "azure.jitPolicy" label ("default"
// when unset), kept by the control plane (see control.PutAzurePolicy). The
// policy's requests are ajar's requests and grants on its VMs. Everything
// goes through the control plane, so both APIs share policies, grants,
// permissions and the activity log.
package azureapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// APIVersion is the one api-version served.
const APIVersion = "2020-01-01"

// ResourceType is the type of the policies served.
const ResourceType = "Microsoft.Security/locations/jitNetworkAccessPolicies"

// Limits.
const (
	MaxBody         = 1 << 20
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// RequestHistory is how many recent requests a policy shows.
	RequestHistory = 50
)

// Handler serves the Azure-compatible API.
type Handler struct {
	ctl        *control.Control
	log        *slog.Logger
	subs       []string
	defaults   control.AzureDefaults
	clientAddr func(*http.Request) netip.Addr
	// PageSize is the size of a list page when the call gives no $top.
	PageSize int
}

// New returns the handler. subscriptions are the subscription ids served
// (the first is the home of VMs not discovered in Azure); location is the
// default ascLocation; clientAddr says where a call came from.
func New(ctl *control.Control, log *slog.Logger, subscriptions []string, location string, clientAddr func(*http.Request) netip.Addr) *Handler {
	h := &Handler{ctl: ctl, log: log, subs: subscriptions, clientAddr: clientAddr, PageSize: DefaultPageSize}
	h.defaults.Location = control.NormalizeLocation(location)
	if len(subscriptions) > 0 {
		h.defaults.Subscription = strings.ToLower(subscriptions[0])
	}
	return h
}

// call is one API call being served.
type call struct {
	w    http.ResponseWriter
	r    *http.Request
	a    *control.Actor
	sub  string // as configured
	vars map[string]string
}

type route struct {
	method  string
	pattern []string
	serve   func(h *Handler, c *call) error
}

const prefix = "subscriptions/{sub}/"

var routes = []route{
	{"GET", split("providers/Microsoft.Security/jitNetworkAccessPolicies"), (*Handler).list},
	{"GET", split("providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies"), (*Handler).list},
	{"GET", split("resourceGroups/{rg}/providers/Microsoft.Security/jitNetworkAccessPolicies"), (*Handler).list},
	{"GET", split("resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies"), (*Handler).list},
	{"GET", split("resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}"), (*Handler).get},
	{"PUT", split("resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}"), (*Handler).put},
	{"DELETE", split("resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}"), (*Handler).delete},
	{"POST", split("resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}/initiate"), (*Handler).initiate},
}

func split(p string) []string { return strings.Split(prefix+p, "/") }

// match matches path segments against a pattern, literals
// case-insensitively, and returns the {variables}.
func match(segs, pattern []string) (map[string]string, bool) {
	if len(segs) != len(pattern) {
		return nil, false
	}
	vars := map[string]string{}
	for i, p := range pattern {
		if strings.HasPrefix(p, "{") {
			if segs[i] == "" {
				return nil, false
			}
			vars[strings.Trim(p, "{}")] = segs[i]
		} else if !strings.EqualFold(p, segs[i]) {
			return nil, false
		}
	}
	return vars, true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic in Azure API handler", "path", r.URL.Path, "panic", p)
			h.writeError(w, r, fmt.Errorf("panic: %v", p))
		}
	}()
	if err := h.serve(w, r); err != nil {
		h.writeError(w, r, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	var segs []string
	for _, s := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(s)
		if err != nil || !jit.Storable(u) {
			return apiError(http.StatusBadRequest, "BadRequest", "malformed path %q: each segment must be UTF-8 text without NUL characters", strings.ToValidUTF8(r.URL.Path, "?"))
		}
		segs = append(segs, u)
	}
	var rt *route
	var vars map[string]string
	var allowed []string
	for i := range routes {
		if v, ok := match(segs, routes[i].pattern); ok {
			allowed = append(allowed, routes[i].method)
			if routes[i].method == r.Method {
				rt, vars = &routes[i], v
			}
		}
	}
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			return apiError(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not allowed on %s", r.Method, r.URL.Path)
		}
		return apiError(http.StatusNotFound, "NotFound", "no such resource or operation: %s %s (ajar serves %s only)", r.Method, r.URL.Path, ResourceType)
	}
	a, err := h.authenticate(r)
	if err != nil {
		return err
	}
	switch v := r.URL.Query()["api-version"]; {
	case len(v) == 0 || v[0] == "":
		return apiError(http.StatusBadRequest, "MissingApiVersionParameter", "the api-version query parameter is required; ajar supports %s", APIVersion)
	case len(v) > 1 || v[0] != APIVersion:
		return apiError(http.StatusBadRequest, "InvalidApiVersionParameter", "api-version %q is not supported for %s; the supported api-version is %s", strings.Join(v, ","), ResourceType, APIVersion)
	}
	sub, ok := h.subscription(vars["sub"])
	if !ok {
		return apiError(http.StatusNotFound, "SubscriptionNotFound", "the subscription %q could not be found (it is not managed by this ajar server)", vars["sub"])
	}
	return rt.serve(h, &call{w: w, r: r, a: a, sub: sub, vars: vars})
}

func (h *Handler) authenticate(r *http.Request) (*control.Actor, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return nil, apiError(http.StatusUnauthorized, "AuthenticationFailed", "authentication failed: the Authorization header is missing; send an ajar API token as a bearer token")
	}
	return h.ctl.Authenticate(r.Context(), strings.TrimSpace(secret), h.clientAddr(r))
}

// subscription returns the configured spelling of a subscription id.
func (h *Handler) subscription(s string) (string, bool) {
	for _, c := range h.subs {
		if strings.EqualFold(c, s) {
			return c, true
		}
	}
	return "", false
}

// Error is an error with its ARM status and code.
type Error struct {
	Status  int
	Code    string
	Message string
	Target  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func apiError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// armCodes maps ajar's error codes to ARM's status codes and error codes.
var armCodes = map[string]struct {
	status int
	code   string
}{
	jit.EInvalid:      {http.StatusBadRequest, "BadRequest"},
	jit.EUnauthorized: {http.StatusUnauthorized, "AuthenticationFailed"},
	jit.EForbidden:    {http.StatusForbidden, "AuthorizationFailed"},
	jit.ENotFound:     {http.StatusNotFound, "NotFound"},
	jit.EConflict:     {http.StatusConflict, "Conflict"},
	jit.ETooLarge:     {http.StatusRequestEntityTooLarge, "RequestEntityTooLarge"},
	jit.ERateLimited:  {http.StatusTooManyRequests, "TooManyRequests"},
	jit.EInternal:     {http.StatusInternalServerError, "InternalServerError"},
	jit.EUnavailable:  {http.StatusServiceUnavailable, "ServiceUnavailable"},
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		code := jit.ErrorCode(err)
		m, ok := armCodes[code]
		if !ok {
			m = armCodes[jit.EInternal]
		}
		ae = &Error{Status: m.status, Code: m.code, Message: jit.ErrorMessage(err), Target: jit.ErrorTarget(err)}
		if code == jit.EInternal || !ok {
			h.log.Error("Azure API call failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
	}
	w.Header().Set("x-ms-error-code", ae.Code)
	httpio.SetRetryAfter(w, err)
	httpio.WriteJSON(w, ae.Status, httpio.ErrorBody{Error: httpio.ErrorDetail{Code: ae.Code, Message: ae.Message, Target: ae.Target}})
}

// decode reads one JSON value of at most MaxBody bytes into v. Unknown
// fields are ignored, as ARM does: clients send back read-only ones.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := httpio.ReadBody(w, r, MaxBody)
	switch jit.ErrorCode(err) {
	case "":
	case jit.EInvalid:
		return apiError(http.StatusBadRequest, "InvalidRequestContent", "the %s", jit.ErrorMessage(err))
	default:
		return err // too large, or the server too busy: writeError maps them
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err = dec.Decode(v); err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			return apiError(http.StatusBadRequest, "InvalidRequestContent", "the request body has data after the JSON value")
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return apiError(http.StatusBadRequest, "InvalidRequestContent", "the request body is empty; send a JSON object")
	case errors.As(err, &te):
		e := apiError(http.StatusBadRequest, "InvalidRequestContent", "field %s must be %s, not %s", te.Field, te.Type, te.Value)
		e.Target = te.Field
		return e
	}
	return apiError(http.StatusBadRequest, "InvalidRequestContent", "the request content is not valid JSON: %v", err)
}
