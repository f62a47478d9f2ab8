package server

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	httpio.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	return jit.Errorf(jit.ENotFound, "no such API route: %s %s", r.Method, r.URL.Path)
}

// Whoami is the answer to GET /api/v1/whoami.
type Whoami struct {
	User     string            `json:"user"`
	Kind     string            `json:"kind"`
	Address  string            `json:"address"`
	Bindings []jit.RoleBinding `json:"bindings"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	b := a.Bindings
	if b == nil {
		b = []jit.RoleBinding{}
	}
	return httpio.WriteJSON(w, http.StatusOK, Whoami{User: a.Name(), Kind: a.Token.Kind, Address: a.Address.String(), Bindings: b})
}

// List is the envelope of every list response. Next, when set, is the
// cursor of the next page: pass it back as ?cursor= with the same filters.
type List[T any] struct {
	Value []T    `json:"value"`
	Next  string `json:"next,omitempty"`
}

func list[T any](v []T) List[T] { return page(v, "") }

func page[T any](v []T, next string) List[T] {
	if v == nil {
		v = []T{}
	}
	return List[T]{Value: v, Next: next}
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	g, err := s.ctl.CreateGroup(r.Context(), a, in.Name)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, g)
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	gs, err := s.ctl.ListGroups(r.Context(), a)
	if err != nil {
		return err
	}
	gs, next, err := control.PageOf(gs, "groups", func(g jit.Group) string { return g.Name }, int(limit), r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(gs, next))
}

func (s *Server) createVM(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.NewVM
	if err := decode(w, r, &in); err != nil {
		return err
	}
	vm, err := s.ctl.CreateVM(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, vm)
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 1, control.MaxVMPage)
	if err != nil {
		return err
	}
	vms, next, err := s.ctl.ListVMs(r.Context(), a, control.VMListFilter{Group: q.Get("group"), JIT: q.Get("jit"), Name: q.Get("name"),
		Limit: int(limit), Cursor: q.Get("cursor")})
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(vms, next))
}

func (s *Server) getVM(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	vm, err := s.ctl.GetVM(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, vm)
}

func (s *Server) deleteVM(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeleteVM(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// PolicyInput is the body of PUT /api/v1/vms/{id}/policy.
type PolicyInput struct {
	Ports                    []jit.PortRule `json:"ports"`
	RequireJustification     bool           `json:"requireJustification"`
	CloseConnectionsOnExpiry bool           `json:"closeConnectionsOnExpiry"`
	Approval                 *jit.Approval  `json:"approval,omitempty"`
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in PolicyInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p, err := s.ctl.PutPolicy(r.Context(), a, r.PathValue("id"), jit.Policy{Ports: in.Ports, RequireJustification: in.RequireJustification, CloseConnectionsOnExpiry: in.CloseConnectionsOnExpiry, Approval: in.Approval})
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, p)
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	p, err := s.ctl.GetPolicy(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, p)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeletePolicy(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) recommendation(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	rec, err := s.ctl.Recommend(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, rec)
}

func (s *Server) vmDesiredState(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	st, err := s.ctl.DesiredState(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, st)
}

func (s *Server) createRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.AccessRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	// A retry with the same Idempotency-Key gets the same request.
	if k, ok := r.Header["Idempotency-Key"]; ok {
		in.IdempotencyKey = strings.Join(k, ",")
		if err := jit.CheckIdempotencyKey(in.IdempotencyKey); err != nil {
			return err
		}
	}
	req, err := s.ctl.RequestAccess(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, req)
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	reqs, next, err := s.ctl.ListRequests(r.Context(), a, control.RequestListFilter{User: q.Get("user"), Limit: int(limit), Cursor: q.Get("cursor")})
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(reqs, next))
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	gs, next, err := s.ctl.ListGrants(r.Context(), a, control.GrantListFilter{VMID: q.Get("vm"), Status: q.Get("status"), User: q.Get("user"),
		Limit: int(limit), Cursor: q.Get("cursor")})
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(gs, next))
}

func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	g, err := s.ctl.Revoke(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, g)
}

// eventFilter reads the activity filters of a request's query: vm, actor,
// operation, since, until, after, cursor, and limit up to maxLimit.
func eventFilter(r *http.Request, maxLimit int64) (control.EventListFilter, error) {
	q := r.URL.Query()
	f := control.EventListFilter{VMID: q.Get("vm"), Actor: q.Get("actor"), Operation: q.Get("operation"), Cursor: q.Get("cursor")}
	var err error
	if f.Since, err = queryTime(r, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(r, "until"); err != nil {
		return f, err
	}
	if f.AfterSeq, err = queryInt(r, "after", 0, 1<<62); err != nil {
		return f, err
	}
	limit, err := queryInt(r, "limit", 1, maxLimit)
	f.Limit = int(limit)
	return f, err
}

func (s *Server) listActivity(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if r.URL.Query().Get("follow") != "" {
		if v := r.URL.Query().Get("follow"); v != "1" && v != "true" {
			return jit.Invalid("follow", "follow must be 1 or true, got %q", v)
		}
		return s.followActivity(w, r, a)
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "json":
	case "jsonl", "csv":
		return s.exportActivity(w, r, a, format)
	default:
		return jit.Invalid("format", "format must be json, jsonl or csv, got %q", format)
	}
	f, err := eventFilter(r, control.MaxEventPage)
	if err != nil {
		return err
	}
	events, next, err := s.ctl.ListEvents(r.Context(), a, f)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(events, next))
}

// exportActivity streams every event the filters select (after the
// sequence number in after; limit, when given, is the most to send) as
// JSON lines or CSV.
func (s *Server) exportActivity(w http.ResponseWriter, r *http.Request, a *control.Actor, format string) error {
	if r.URL.Query().Has("cursor") {
		return jit.Invalid("cursor", "exports are not paged: they return every event (use after to resume)")
	}
	f, err := eventFilter(r, 1<<62)
	if err != nil {
		return err
	}
	return httpio.StreamEvents(w, r, s.log, format, "ajar-activity."+format, func(fn func(*jit.Event) error) error {
		return s.ctl.ExportEvents(r.Context(), a, f, fn)
	})
}

func (s *Server) verifyActivity(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var anchor *jit.Anchor
	if q := r.URL.Query().Get("anchor"); q != "" {
		an, err := jit.ParseAnchor(q)
		if err != nil {
			return jit.Invalid("anchor", "%v", err)
		}
		anchor = &an
	}
	v, err := s.ctl.VerifyAnchored(r.Context(), a, anchor)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.NewUser
	if err := decode(w, r, &in); err != nil {
		return err
	}
	u, err := s.ctl.CreateUser(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, u)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	us, next, err := s.ctl.ListUsers(r.Context(), a, int(limit), r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(us, next))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeleteUser(r.Context(), a, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// PasswordSet answers a password change: the user's other console
// sessions ended with it.
type PasswordSet struct {
	User          string `json:"user"`
	SessionsEnded int    `json:"sessionsEnded"`
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in struct {
		Password string `json:"password"`
		// CurrentPassword is needed to change one's own password.
		CurrentPassword string `json:"currentPassword"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	n, err := s.ctl.SetPassword(r.Context(), a, r.PathValue("name"), in.CurrentPassword, in.Password)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, PasswordSet{User: r.PathValue("name"), SessionsEnded: n})
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.NewToken
	if err := decode(w, r, &in); err != nil {
		return err
	}
	tk, err := s.ctl.CreateToken(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, tk)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	ts, next, err := s.ctl.ListTokens(r.Context(), a, q.Get("user"), int(limit), q.Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(ts, next))
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.RevokeToken(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) createRoleBinding(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in struct {
		User  string `json:"user"`
		Role  string `json:"role"`
		Group string `json:"group"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	b, err := s.ctl.CreateRoleBinding(r.Context(), a, jit.RoleBinding{User: in.User, Role: in.Role, Group: in.Group})
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, b)
}

func (s *Server) listRoleBindings(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	bs, err := s.ctl.ListRoleBindings(r.Context(), a, r.URL.Query().Get("user"))
	if err != nil {
		return err
	}
	bs, next, err := control.PageOf(bs, "rolebindings", func(b jit.RoleBinding) string { return b.User + "\x00" + b.Group + "\x00" + b.Role }, int(limit), r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(bs, next))
}

func (s *Server) deleteRoleBinding(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeleteRoleBinding(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) createEnrollToken(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.NewEnrollToken
	if err := decode(w, r, &in); err != nil {
		return err
	}
	tk, err := s.ctl.CreateEnrollToken(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, tk)
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.Enrollment
	if err := decode(w, r, &in); err != nil {
		return err
	}
	e, err := s.ctl.Enroll(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, e)
}

func (s *Server) agentDesiredState(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if a.Token.Kind != jit.TokenAgent {
		return jit.Errorf(jit.EForbidden, "only agent credentials may watch their desired state")
	}
	after, err := queryInt(r, "after", -1, 1<<62)
	if err != nil {
		return err
	}
	// The long poll's time bounds only the wait for a change: a read the
	// server is busy with when it runs out still answers.
	wait := s.LongPoll
	if !r.URL.Query().Has("after") {
		after, wait = -1, 0
	}
	st, err := s.ctl.WatchDesiredState(r.Context(), a, a.Token.VMID, after, wait)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, st)
}

func (s *Server) agentWatch(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if a.Token.Kind != jit.TokenAgent {
		return jit.Errorf(jit.EForbidden, "only agent credentials may watch their desired state")
	}
	var in jit.Watch
	if err := decode(w, r, &in); err != nil {
		return err
	}
	httpio.ReleaseBody(r) // the wait holds none of it
	p, err := s.ctl.StartAgentPoll(r.Context(), a, in)
	if err != nil {
		return err
	}
	// Each waits between AgentWatch and 1.5 times it, so that agents that
	// came together (a restart) do not all ask again together.
	wait := s.AgentWatch + rand.N(s.AgentWatch/2+1)
	if in.After >= 0 && s.park(w, r, p, time.Now().Add(wait)) {
		return nil // answered by the parked connection (park.go)
	}
	defer p.End()
	st, changed, err := p.Wait(r.Context(), wait)
	if err != nil {
		return err
	}
	if !changed {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return httpio.WriteJSON(w, http.StatusOK, st)
}

func (s *Server) agentReport(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.Report
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if err := s.ctl.Report(r.Context(), a, in); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) agentEvent(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.AgentEvent
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if err := s.ctl.RecordAgentEvent(r.Context(), a, in); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
