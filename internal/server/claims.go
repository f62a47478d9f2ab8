package server

import (
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
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
	return httpio.WriteJSON(w, http.StatusCreated, m)
}

func (s *Server) listClaimMappings(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ms, err := s.ctl.ListClaimMappings(r.Context(), a)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, list(ms))
}

func (s *Server) deleteClaimMapping(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeleteClaimMapping(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ssoToken trades the one-time code `ajar login --sso` got back from the
// browser, with its verifier, for an API token. The code is the
// credential: no bearer token is needed.
func (s *Server) ssoToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Code     string `json:"code"`
		Verifier string `json:"verifier"`
	}
	err := httpio.CheckText(r)
	if err == nil {
		err = decode(w, r, &in)
	}
	if err == nil {
		var tk jit.CreatedToken
		if tk, err = s.ctl.ExchangeSSOCode(r.Context(), in.Code, in.Verifier, s.ClientAddr(r)); err == nil {
			err = httpio.WriteJSON(w, http.StatusCreated, tk)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}
