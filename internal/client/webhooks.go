package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/ajarhq/ajar/internal/jit"
)

// CreateWebhook adds a webhook; the answer holds its secret, shown once.
func (c *Client) CreateWebhook(ctx context.Context, w jit.NewWebhook) (jit.CreatedWebhook, error) {
	return send[jit.CreatedWebhook](ctx, c, http.MethodPost, "/api/v1/webhooks", w)
}

// ListWebhooks lists the webhooks.
func (c *Client) ListWebhooks(ctx context.Context) ([]jit.Webhook, error) {
	return getList[jit.Webhook](ctx, c, "/api/v1/webhooks")
}

// DeleteWebhook removes a webhook.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/webhooks/"+url.PathEscape(id), nil, nil)
}

// ListDeliveries returns one page of a webhook's deliveries, newest event
// first (limit 0: the server's default), and the next page's cursor.
func (c *Client) ListDeliveries(ctx context.Context, id string, limit int, cursor string) ([]jit.Delivery, string, error) {
	lim := ""
	if limit > 0 {
		lim = fmt.Sprint(limit)
	}
	l, err := get[list[jit.Delivery]](ctx, c, "/api/v1/webhooks/"+url.PathEscape(id)+"/deliveries"+query("limit", lim, "cursor", cursor))
	return l.Value, l.Next, err
}
