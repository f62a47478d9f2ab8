package server

import (
	"net/http"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// Webhooks: activity events sent to other systems (admins only).

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	var in jit.NewWebhook
	if err := decode(w, r, &in); err != nil {
		return err
	}
	h, err := s.ctl.CreateWebhook(r.Context(), a, in)
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusCreated, h)
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	hs, err := s.ctl.ListWebhooks(r.Context(), a)
	if err != nil {
		return err
	}
	hs, next, err := control.PageOf(hs, "webhooks", func(h jit.Webhook) string { return h.ID }, int(limit), r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(hs, next))
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := s.ctl.DeleteWebhook(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	limit, err := queryInt(r, "limit", 1, control.MaxPage)
	if err != nil {
		return err
	}
	ds, next, err := s.ctl.ListDeliveries(r.Context(), a, r.PathValue("id"), int(limit), r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return httpio.WriteJSON(w, http.StatusOK, page(ds, next))
}
