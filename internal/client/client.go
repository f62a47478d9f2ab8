// Package client is the Go client of ajar's REST API, used by the CLI, the
// agent and the tests. Errors from the server come back as *jit.Error with
// the server's code, message and target.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Client talks to one ajard.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// Options configure New.
type Options struct {
	// Fingerprint pins the server's certificate ("sha256:HEX" of its DER);
	// when set, the usual CA checks are replaced by the pin.
	Fingerprint string
	// RequireTLS refuses plain HTTP except to loopback addresses.
	RequireTLS bool
	Timeout    time.Duration
	// HTTP1 speaks HTTP/1.1 only, never HTTP/2: an agent's requests take
	// turns on one keep-alive connection, which costs the server a
	// fraction of an HTTP/2 connection's memory and work.
	HTTP1 bool
}

// New returns a client for the server at baseURL.
func New(baseURL, token string, o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q must be http(s)://host[:port]", baseURL)
	}
	if o.RequireTLS && u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: use https (plain HTTP is allowed only to loopback)", u.Host)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if o.HTTP1 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
	}
	if o.Fingerprint != "" {
		want, err := ParseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the pin below
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("server sent no certificate")
				}
				got := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if !bytes.Equal(got[:], want) {
					return fmt.Errorf("server certificate fingerprint sha256:%s does not match the pinned one", hex.EncodeToString(got[:]))
				}
				return nil
			},
		}
	}
	return &Client{BaseURL: u.String(), Token: token, HTTP: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// ParseFingerprint parses "sha256:HEX" (colons between bytes allowed).
func ParseFingerprint(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "sha256:")
	b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q must be sha256: followed by 64 hex digits", s)
	}
	return b, nil
}

// CertFingerprint returns the fingerprint of a certificate.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard it).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return responseError(resp)
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb struct {
		Error struct {
			Code, Message, Target string
		} `json:"error"`
	}
	if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
		return &jit.Error{Code: eb.Error.Code, Message: eb.Error.Message, Target: eb.Error.Target}
	}
	return &jit.Error{Code: jit.EInternal, Message: fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))}
}

type list[T any] struct {
	Value []T    `json:"value"`
	Next  string `json:"next"`
}

func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var v T
	err := c.Do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}

// getList reads every page of a list, following the server's cursors.
func getList[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var all []T
	for cursor := ""; ; {
		p := path
		if cursor != "" {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			p += sep + "cursor=" + url.QueryEscape(cursor)
		}
		l, err := get[list[T]](ctx, c, p)
		if err != nil {
			return nil, err
		}
		all = append(all, l.Value...)
		if l.Next == "" || l.Next == cursor {
			return all, nil
		}
		cursor = l.Next
	}
}

func send[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var v T
	err := c.Do(ctx, method, path, in, &v)
	return v, err
}

func query(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// Health checks /healthz.
func (c *Client) Health(ctx context.Context) error {
	return c.Do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Whoami returns who the token stands for.
func (c *Client) Whoami(ctx context.Context) (Whoami, error) {
	return get[Whoami](ctx, c, "/api/v1/whoami")
}

// Whoami is the answer of /api/v1/whoami.
type Whoami struct {
	User     string            `json:"user"`
	Kind     string            `json:"kind"`
	Address  string            `json:"address"`
	Bindings []jit.RoleBinding `json:"bindings"`
}

// CreateGroup creates a group.
func (c *Client) CreateGroup(ctx context.Context, name string) (jit.Group, error) {
	return send[jit.Group](ctx, c, http.MethodPost, "/api/v1/groups", map[string]string{"name": name})
}

// ListGroups lists groups.
func (c *Client) ListGroups(ctx context.Context) ([]jit.Group, error) {
	return getList[jit.Group](ctx, c, "/api/v1/groups")
}

// CreateVM registers a VM.
func (c *Client) CreateVM(ctx context.Context, n jit.NewVM) (jit.VM, error) {
	return send[jit.VM](ctx, c, http.MethodPost, "/api/v1/vms", n)
}

// ListVMs lists VMs, every page of them; group, jit (configured,
// not-configured, unsupported) and name filter when not empty.
func (c *Client) ListVMs(ctx context.Context, group, jitState, name string) ([]jit.VMView, error) {
	return getList[jit.VMView](ctx, c, "/api/v1/vms"+query("group", group, "jit", jitState, "name", name))
}

// GetVM returns one VM.
func (c *Client) GetVM(ctx context.Context, id string) (jit.VMView, error) {
	return get[jit.VMView](ctx, c, "/api/v1/vms/"+url.PathEscape(id))
}

// DeleteVM deletes a VM.
func (c *Client) DeleteVM(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/vms/"+url.PathEscape(id), nil, nil)
}

// PutPolicy sets a VM's JIT policy.
func (c *Client) PutPolicy(ctx context.Context, vmID string, p jit.Policy) (jit.Policy, error) {
	in := map[string]any{"ports": p.Ports, "requireJustification": p.RequireJustification, "closeConnectionsOnExpiry": p.CloseConnectionsOnExpiry}
	if p.Approval != nil {
		in["approval"] = p.Approval
	}
	return send[jit.Policy](ctx, c, http.MethodPut, "/api/v1/vms/"+url.PathEscape(vmID)+"/policy", in)
}

// GetPolicy returns a VM's JIT policy.
func (c *Client) GetPolicy(ctx context.Context, vmID string) (jit.Policy, error) {
	return get[jit.Policy](ctx, c, "/api/v1/vms/"+url.PathEscape(vmID)+"/policy")
}

// DeletePolicy disables JIT on a VM.
func (c *Client) DeletePolicy(ctx context.Context, vmID string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/vms/"+url.PathEscape(vmID)+"/policy", nil, nil)
}

// Recommend returns a VM's recommended ports and health.
func (c *Client) Recommend(ctx context.Context, vmID string) (jit.Recommendation, error) {
	return get[jit.Recommendation](ctx, c, "/api/v1/vms/"+url.PathEscape(vmID)+"/recommendation")
}

// RequestAccess submits an access request.
func (c *Client) RequestAccess(ctx context.Context, r jit.AccessRequest) (jit.Request, error) {
	return send[jit.Request](ctx, c, http.MethodPost, "/api/v1/requests", r)
}

// ListRequests lists requests.
func (c *Client) ListRequests(ctx context.Context, user string) ([]jit.Request, error) {
	return getList[jit.Request](ctx, c, "/api/v1/requests"+query("user", user))
}

// GetRequest returns a request: its state, decisions and grants.
func (c *Client) GetRequest(ctx context.Context, id string) (jit.Request, error) {
	return get[jit.Request](ctx, c, "/api/v1/requests/"+url.PathEscape(id))
}

// ListPending lists the pending requests the caller may decide.
func (c *Client) ListPending(ctx context.Context) ([]jit.Request, error) {
	return getList[jit.Request](ctx, c, "/api/v1/requests/pending")
}

// Approve approves a pending request.
func (c *Client) Approve(ctx context.Context, id, reason string) (jit.Request, error) {
	return send[jit.Request](ctx, c, http.MethodPost, "/api/v1/requests/"+url.PathEscape(id)+"/approve", map[string]string{"reason": reason})
}

// Deny denies a pending request; reason is required.
func (c *Client) Deny(ctx context.Context, id, reason string) (jit.Request, error) {
	return send[jit.Request](ctx, c, http.MethodPost, "/api/v1/requests/"+url.PathEscape(id)+"/deny", map[string]string{"reason": reason})
}

// CancelRequest withdraws the caller's own pending request.
func (c *Client) CancelRequest(ctx context.Context, id string) (jit.Request, error) {
	return send[jit.Request](ctx, c, http.MethodPost, "/api/v1/requests/"+url.PathEscape(id)+"/cancel", nil)
}

// ListGrants lists grants; empty filters match everything.
func (c *Client) ListGrants(ctx context.Context, vmID, status, user string) ([]jit.Grant, error) {
	return getList[jit.Grant](ctx, c, "/api/v1/grants"+query("vm", vmID, "status", status, "user", user))
}

// Revoke ends a grant early.
func (c *Client) Revoke(ctx context.Context, id string) (jit.Grant, error) {
	return send[jit.Grant](ctx, c, http.MethodPost, "/api/v1/grants/"+url.PathEscape(id)+"/revoke", nil)
}

// EventQuery filters the activity log.
type EventQuery struct {
	VM, Actor, Operation string
	Since, Until         time.Time
	After                int64
	Limit                int
}

func (q EventQuery) values(format string) string {
	t := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	n := func(i int64) string {
		if i == 0 {
			return ""
		}
		return strconv.FormatInt(i, 10)
	}
	return query("vm", q.VM, "actor", q.Actor, "operation", q.Operation, "since", t(q.Since), "until", t(q.Until),
		"after", n(q.After), "limit", n(int64(q.Limit)), "format", format)
}

// ListEvents reads one page of activity events: those after q.After, at
// most q.Limit (the server's maximum is 10,000; 0 asks for its default).
func (c *Client) ListEvents(ctx context.Context, q EventQuery) ([]jit.Event, error) {
	l, err := get[list[jit.Event]](ctx, c, "/api/v1/activity"+q.values(""))
	return l.Value, err
}

// ExportEvents writes every activity event q selects (at most q.Limit
// when set) to w as csv or jsonl; the server streams them.
func (c *Client) ExportEvents(ctx context.Context, q EventQuery, format string, w io.Writer) error {
	return c.Do(ctx, http.MethodGet, "/api/v1/activity"+q.values(format), nil, w)
}

// Verify walks the activity log's hash chain on the server.
func (c *Client) Verify(ctx context.Context) (jit.Verification, error) {
	return get[jit.Verification](ctx, c, "/api/v1/activity/verify")
}

// VerifyAnchored walks the chain and checks that it still holds anchor,
// the head of an earlier verification.
func (c *Client) VerifyAnchored(ctx context.Context, anchor jit.Anchor) (jit.Verification, error) {
	return get[jit.Verification](ctx, c, "/api/v1/activity/verify"+query("anchor", anchor.String()))
}

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, n jit.NewUser) (jit.User, error) {
	return send[jit.User](ctx, c, http.MethodPost, "/api/v1/users", n)
}

// ListUsers lists users.
func (c *Client) ListUsers(ctx context.Context) ([]jit.User, error) {
	return getList[jit.User](ctx, c, "/api/v1/users")
}

// DeleteUser deletes a user.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(name), nil, nil)
}

// PasswordSet answers SetPassword.
type PasswordSet struct {
	User          string `json:"user"`
	SessionsEnded int    `json:"sessionsEnded"` // the user's other console sessions
}

// SetPassword sets a user's console password. current is the user's
// current one, needed to change one's own; "" for an admin's reset.
func (c *Client) SetPassword(ctx context.Context, user, current, password string) (PasswordSet, error) {
	in := map[string]string{"password": password}
	if current != "" {
		in["currentPassword"] = current
	}
	return send[PasswordSet](ctx, c, http.MethodPut, "/api/v1/users/"+url.PathEscape(user)+"/password", in)
}

// CreateToken creates an API token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, n jit.NewToken) (jit.CreatedToken, error) {
	return send[jit.CreatedToken](ctx, c, http.MethodPost, "/api/v1/tokens", n)
}

// ListTokens lists tokens.
func (c *Client) ListTokens(ctx context.Context, user string) ([]jit.Token, error) {
	return getList[jit.Token](ctx, c, "/api/v1/tokens"+query("user", user))
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// CreateRoleBinding gives a user a role in a group.
func (c *Client) CreateRoleBinding(ctx context.Context, user, role, group string) (jit.RoleBinding, error) {
	return send[jit.RoleBinding](ctx, c, http.MethodPost, "/api/v1/rolebindings", map[string]string{"user": user, "role": role, "group": group})
}

// ListRoleBindings lists role bindings.
func (c *Client) ListRoleBindings(ctx context.Context, user string) ([]jit.RoleBinding, error) {
	return getList[jit.RoleBinding](ctx, c, "/api/v1/rolebindings"+query("user", user))
}

// DeleteRoleBinding removes a role binding.
func (c *Client) DeleteRoleBinding(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/rolebindings/"+url.PathEscape(id), nil, nil)
}

// CreateEnrollToken creates an agent enrollment token.
func (c *Client) CreateEnrollToken(ctx context.Context, n jit.NewEnrollToken) (jit.CreatedToken, error) {
	return send[jit.CreatedToken](ctx, c, http.MethodPost, "/api/v1/enrollment-tokens", n)
}

// Enroll registers this host with an enrollment token (the client's token).
func (c *Client) Enroll(ctx context.Context, e jit.Enrollment) (jit.Enrolled, error) {
	return send[jit.Enrolled](ctx, c, http.MethodPost, "/api/v1/agent/enroll", e)
}

// Watch sends the agent's report and waits for its desired state (long
// poll): it answers the state once its revision is past after (at once
// when after < 0), or, when the server's wait runs out first, changed
// false and no state.
func (c *Client) Watch(ctx context.Context, after int64, r jit.Report) (st jit.DesiredState, changed bool, err error) {
	b, err := json.Marshal(jit.Watch{After: after, Report: r})
	if err != nil {
		return st, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/agent/watch", bytes.NewReader(b))
	if err != nil {
		return st, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return st, false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300:
		return st, false, responseError(resp)
	case resp.StatusCode == http.StatusNoContent:
		io.Copy(io.Discard, resp.Body)
		return st, false, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, false, err
	}
	io.Copy(io.Discard, resp.Body) // the connection is reused once the body is read to its end
	return st, true, nil
}

// WatchDesiredState is the long poll of agents of the previous version
// (kept to test that ajard still serves them): the desired state once
// its revision is past after, or after the server's wait the unchanged
// state; after < 0 answers at once.
func (c *Client) WatchDesiredState(ctx context.Context, after int64) (jit.DesiredState, error) {
	path := "/api/v1/agent/desired-state"
	if after >= 0 {
		path += "?after=" + strconv.FormatInt(after, 10)
	}
	return get[jit.DesiredState](ctx, c, path)
}

// Report sends a heartbeat as agents of the previous version do, beside
// their long poll (Watch carries it now).
func (c *Client) Report(ctx context.Context, r jit.Report) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/agent/report", r, nil)
}

// AgentEvent records an agent's event in the activity log.
func (c *Client) AgentEvent(ctx context.Context, e jit.AgentEvent) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/agent/events", e, nil)
}
