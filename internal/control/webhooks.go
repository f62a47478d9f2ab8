package control

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Webhooks tell other systems of activity events (admins only); package
// webhook delivers them from the outbox these operations fill.

// AllowHTTPWebhooks lets webhooks use http:// URLs to any host, not only
// to loopback addresses (ajard --webhook-allow-http).
func (c *Control) AllowHTTPWebhooks() { c.webhookHTTP = true }

// CreateWebhook adds a webhook; the secret that signs its bodies is in
// the answer, and only there.
func (c *Control) CreateWebhook(ctx context.Context, a *Actor, in jit.NewWebhook) (jit.CreatedWebhook, error) {
	if err := a.require(jit.PermAdmin, "", "manage webhooks"); err != nil {
		return jit.CreatedWebhook{}, err
	}
	if err := jit.ValidateWebhook(&in, c.webhookHTTP); err != nil {
		return jit.CreatedWebhook{}, err
	}
	if in.Secret == "" {
		in.Secret = newWebhookSecret()
	}
	w := jit.Webhook{ID: NewID(), URL: in.URL, Format: in.Format, Events: in.Events, Groups: in.Groups,
		CreatedAt: c.Now(), CreatedBy: a.Name(), Secret: in.Secret}
	if w.Groups == nil {
		w.Groups = []string{}
	}
	err := c.store.Update(ctx, func(tx store.Tx) error {
		for _, g := range w.Groups {
			if _, err := tx.GetGroup(g); err != nil {
				return targeted(err, "groups")
			}
		}
		// Told of what happens from now on.
		head, err := tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
		if err != nil {
			return err
		}
		w.Cursor = 0
		if len(head) == 1 {
			w.Cursor = head[0].Seq
		}
		if err := tx.CreateWebhook(w); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpWebhookCreate, jit.OutcomeSuccess, nil, webhookDetails(w)))
	})
	if err != nil {
		return jit.CreatedWebhook{}, err
	}
	return jit.CreatedWebhook{Webhook: w, Secret: w.Secret}, nil
}

// webhookDetails is what the activity log keeps of a webhook: never its
// secret, and of its URL only the scheme and host (the path of a Slack or
// Teams URL is a credential, and readers of the log need not see it).
func webhookDetails(w jit.Webhook) map[string]any {
	host := ""
	if u, err := url.Parse(w.URL); err == nil {
		host = u.Scheme + "://" + u.Host
	}
	return map[string]any{"webhook": w.ID, "host": host, "format": w.Format, "events": w.Events, "groups": w.Groups}
}

func newWebhookSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// ListWebhooks lists the webhooks, without their secrets (admins only).
func (c *Control) ListWebhooks(ctx context.Context, a *Actor) ([]jit.Webhook, error) {
	if err := a.require(jit.PermAdmin, "", "list webhooks"); err != nil {
		return nil, err
	}
	var out []jit.Webhook
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListWebhooks()
		return err
	})
	for i := range out {
		out[i].Secret = ""
	}
	return out, err
}

// DeleteWebhook removes a webhook and its deliveries (admins only).
func (c *Control) DeleteWebhook(ctx context.Context, a *Actor, id string) error {
	if err := a.require(jit.PermAdmin, "", "manage webhooks"); err != nil {
		return err
	}
	return c.store.Update(ctx, func(tx store.Tx) error {
		w, err := tx.GetWebhook(id)
		if err != nil {
			return err
		}
		if err := tx.DeleteWebhook(id); err != nil {
			return err
		}
		return tx.AppendEvent(c.event(a, jit.OpWebhookDelete, jit.OutcomeSuccess, nil, webhookDetails(w)))
	})
}

// ListDeliveries returns one page of a webhook's deliveries, newest event
// first, and the next page's cursor (admins only).
func (c *Control) ListDeliveries(ctx context.Context, a *Actor, id string, limit int, cursor string) ([]jit.Delivery, string, error) {
	if err := a.require(jit.PermAdmin, "", "read webhook deliveries"); err != nil {
		return nil, "", err
	}
	limit, err := pageLimit(limit, DefaultPage, MaxPage)
	if err != nil {
		return nil, "", err
	}
	var before int64
	if err := decodeCursor(cursor, "deliveries", &before); err != nil {
		return nil, "", err
	}
	var out []jit.Delivery
	err = c.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetWebhook(id); err != nil {
			return err
		}
		var err error
		out, err = tx.ListDeliveries(store.DeliveryFilter{WebhookID: id, BeforeSeq: before, Limit: limit + 1})
		return err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	return out, encodeCursor("deliveries", out[limit-1].Seq), nil
}
