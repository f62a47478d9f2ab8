package sso

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// The device authorization grant (RFC 8628), for `ajar login --sso
// --device` on a machine whose browser cannot reach a loopback listener:
// the person opens the provider's page on any device and types the code
// shown; meanwhile ajard asks the provider, with its client credentials,
// whether they did.

// ErrNoDeviceGrant is returned when the provider publishes no device
// authorization endpoint.
var ErrNoDeviceGrant = errors.New("the identity provider does not offer the device authorization grant; use ajar login --sso in a browser")

// ErrPending is returned while the person has not yet decided.
var ErrPending = errors.New("the sign-in is not yet approved at the identity provider")

// Device is a device authorization in progress: what the person is
// shown, and the device code (which only ajard, holding the client
// secret, can redeem).
type Device struct {
	UserCode                string    `json:"userCode"`
	VerificationURI         string    `json:"verificationUri"`
	VerificationURIComplete string    `json:"verificationUriComplete,omitempty"`
	DeviceCode              string    `json:"deviceCode"`
	ExpiresAt               time.Time `json:"expiresAt"`
	Interval                int       `json:"interval"` // seconds between polls
}

// DeviceStart asks the provider for a device authorization.
func (p *Provider) DeviceStart(ctx context.Context) (Device, error) {
	op, err := p.discover(ctx)
	if err != nil {
		return Device{}, err
	}
	cfg := p.oauth(op, "")
	if cfg.Endpoint.DeviceAuthURL == "" {
		return Device{}, ErrNoDeviceGrant
	}
	da, err := cfg.DeviceAuth(oidc.ClientContext(ctx, p.hc))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return Device{}, fmt.Errorf("the identity provider refused the device authorization: %s %s", re.ErrorCode, re.ErrorDescription)
		}
		return Device{}, fmt.Errorf("%w: device authorization: %v", ErrUnavailable, err)
	}
	d := Device{UserCode: da.UserCode, VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete,
		DeviceCode: da.DeviceCode, ExpiresAt: da.Expiry, Interval: int(da.Interval)}
	if d.Interval <= 0 {
		d.Interval = 5
	}
	if d.ExpiresAt.IsZero() {
		d.ExpiresAt = time.Now().Add(5 * time.Minute)
	}
	return d, nil
}

// DeviceFinish waits, until ctx ends, for the person to approve the
// device authorization at the provider, and returns who they are from a
// verified ID token (the grant carries no nonce). It returns ErrPending
// when ctx ends first, so that the caller asks again.
func (p *Provider) DeviceFinish(ctx context.Context, d Device) (Identity, error) {
	op, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	interval := max(d.Interval, 1)
	hctx := oidc.ClientContext(ctx, p.hc)
	tok, err := p.oauth(op, "").DeviceAccessToken(hctx, &oauth2.DeviceAuthResponse{DeviceCode: d.DeviceCode, Interval: int64(interval), Expiry: d.ExpiresAt})
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case !time.Now().Before(d.ExpiresAt) || errors.As(err, &re) && re.ErrorCode == "expired_token":
			return Identity{}, errors.New("the device code expired before the sign-in was approved; run ajar login --sso --device again")
		case ctx.Err() != nil:
			return Identity{}, ErrPending
		case errors.As(err, &re) && re.ErrorCode == "access_denied":
			return Identity{}, errors.New("the sign-in was denied at the identity provider")
		case errors.As(err, &re):
			return Identity{}, fmt.Errorf("the identity provider refused the device code: %s", re.ErrorCode)
		}
		return Identity{}, fmt.Errorf("%w: device token: %v", ErrUnavailable, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, errors.New("the identity provider sent no ID token")
	}
	idt, err := p.verify(hctx, op, raw, noNonce)
	if err != nil {
		return Identity{}, err
	}
	return p.identity(hctx, op, tok, idt)
}
