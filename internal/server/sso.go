package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso"
)

// UseSSO serves `ajar login --sso --device` through p: POST
// /api/v1/sso/device starts a device authorization at the provider, POST
// /api/v1/sso/device/token waits for the person's approval and answers
// their API token. Without it both answer 404.
func (s *Server) UseSSO(p *sso.Provider) { s.sso = p }

// deviceWait bounds one POST /api/v1/sso/device/token: the CLI asks
// again while the answer is 202 pending.
const deviceWait = 20 * time.Second

func (s *Server) ssoDeviceStart(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		s.writeError(w, r, jit.Errorf(jit.ENotFound, "this server has no OpenID provider (--oidc-issuer)"))
		return
	}
	if err := s.ctl.AllowDeviceStart(s.ClientAddr(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	d, err := s.sso.DeviceStart(r.Context())
	if err != nil {
		s.writeError(w, r, ssoError(err))
		return
	}
	httpio.WriteJSON(w, http.StatusOK, d)
}

func (s *Server) ssoDeviceToken(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		s.writeError(w, r, jit.Errorf(jit.ENotFound, "this server has no OpenID provider (--oidc-issuer)"))
		return
	}
	var in sso.Device
	err := httpio.CheckText(r)
	if err == nil {
		err = decode(w, r, &in)
	}
	switch {
	case err != nil:
	case in.DeviceCode == "" || len(in.DeviceCode) > 512:
		err = jit.Invalid("deviceCode", "deviceCode must be the device code POST /api/v1/sso/device answered (at most 512 characters)")
	case in.Interval < 1 || in.Interval > 60:
		err = jit.Invalid("interval", "interval must be 1 to 60 seconds")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deviceWait)
	defer cancel()
	id, err := s.sso.DeviceFinish(ctx, in)
	if errors.Is(err, sso.ErrPending) {
		httpio.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "pending"})
		return
	}
	if err != nil {
		s.writeError(w, r, s.ctl.SSORefused(r.Context(), s.ClientAddr(r), ssoError(err)))
		return
	}
	tk, err := s.ctl.SSODeviceSignIn(r.Context(), id, s.ClientAddr(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	httpio.WriteJSON(w, http.StatusCreated, tk)
}

// ssoError gives the provider's failures an API error code: unreachable
// is 503, everything else a refusal of the sign-in.
func ssoError(err error) error {
	switch {
	case jit.ErrorCode(err) != jit.EInternal:
		return err
	case errors.Is(err, sso.ErrUnavailable):
		return jit.Errorf(jit.EUnavailable, "%s", err.Error())
	case errors.Is(err, sso.ErrNoDeviceGrant):
		return jit.Errorf(jit.EInvalid, "%s", err.Error())
	}
	return jit.Errorf(jit.EUnauthorized, "%s", err.Error())
}
