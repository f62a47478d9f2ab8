package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// CreateClaimMapping maps an OpenID provider claim's value to a role in a
// group.
func (c *Client) CreateClaimMapping(ctx context.Context, claim, value, role, group string) (jit.ClaimMapping, error) {
	return send[jit.ClaimMapping](ctx, c, http.MethodPost, "/api/v1/claimmappings", map[string]string{"claim": claim, "value": value, "role": role, "group": group})
}

// ListClaimMappings lists claim mappings.
func (c *Client) ListClaimMappings(ctx context.Context) ([]jit.ClaimMapping, error) {
	return getList[jit.ClaimMapping](ctx, c, "/api/v1/claimmappings")
}

// DeleteClaimMapping removes a claim mapping.
func (c *Client) DeleteClaimMapping(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/claimmappings/"+url.PathEscape(id), nil, nil)
}

// SSOToken trades the one-time code of `ajar login --sso` and its
// verifier for an API token; it needs no token of its own.
func (c *Client) SSOToken(ctx context.Context, code, verifier string) (jit.CreatedToken, error) {
	return send[jit.CreatedToken](ctx, c, http.MethodPost, "/api/v1/sso/token", map[string]string{"code": code, "verifier": verifier})
}

// Device is a device authorization in progress (POST /api/v1/sso/device):
// the code the person types at the provider's page, and the device code
// the server redeems.
type Device struct {
	UserCode                string    `json:"userCode"`
	VerificationURI         string    `json:"verificationUri"`
	VerificationURIComplete string    `json:"verificationUriComplete,omitempty"`
	DeviceCode              string    `json:"deviceCode"`
	ExpiresAt               time.Time `json:"expiresAt"`
	Interval                int       `json:"interval"`
}

// SSODevice starts a sign-in through the server's OpenID provider on
// another device (the device authorization grant).
func (c *Client) SSODevice(ctx context.Context) (Device, error) {
	return send[Device](ctx, c, http.MethodPost, "/api/v1/sso/device", nil)
}

// SSODeviceToken waits (up to 20 s on the server) for the person to
// approve d; it answers the API token, or ok false while they have not.
func (c *Client) SSODeviceToken(ctx context.Context, d Device) (tk jit.CreatedToken, ok bool, err error) {
	tk, err = send[jit.CreatedToken](ctx, c, http.MethodPost, "/api/v1/sso/device/token", d)
	return tk, err == nil && tk.Secret != "", err
}
