package server

import (
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// Claim mappings: roles from an OpenID provider's claims (admins only).

func (s *Server) createClaimMapping(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in struct {
		Claim string `json:"claim"`
		Value string `json:"value"`
		Role  string `json:"role"`
		Group string `json:"group"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	m, err := s.ctl.CreateClaimMapping(r.Context(), a, jit.ClaimMapping{Claim: in.Claim, Value: in.Value, Role: in.Role, Group: in.Group})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, m)
}

func (s *Server) listClaimMappings(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ms, err := s.ctl.ListClaimMappings(r.Context(), a)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(ms))
}

func (s *Server) deleteClaimMapping(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeleteClaimMapping(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
