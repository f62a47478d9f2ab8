package server

import (
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
)

// DecisionInput is the body of an approval or a denial.
type DecisionInput struct {
	Reason string `json:"reason"`
}

func (s *Server) listPendingRequests(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	reqs, next, err := s.ctl.ListPending(r.Context(), a, int(limit), r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(reqs, next))
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	req, err := s.ctl.GetRequest(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, req)
}

func (s *Server) approveRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in DecisionInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	req, err := s.ctl.Approve(r.Context(), a, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, req)
}

func (s *Server) denyRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in DecisionInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	req, err := s.ctl.Deny(r.Context(), a, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, req)
}

func (s *Server) cancelRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	req, err := s.ctl.Cancel(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, req)
}
