package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// testWebhooks: a webhook keeps its secret, kinds and groups; its cursor
// moves, with the deliveries it queues, only from where it is; a delivery
// changes only from the attempt count it is at (the claim of an attempt);
// due deliveries come earliest first; deleting the webhook drops its
// deliveries.
func testWebhooks(t *testing.T, s store.Store) {
	w := jit.Webhook{ID: "w1", URL: "https://hooks.example.com/a", Format: jit.FormatSlack, Events: []string{jit.KindGrantOpened},
		Groups: []string{"prod"}, CreatedAt: t0, CreatedBy: "admin", Cursor: 7, Secret: "s3cret-0123456789"}
	update(t, s, func(tx store.Tx) error { return tx.CreateWebhook(w) })
	update(t, s, func(tx store.Tx) error {
		return tx.CreateWebhook(jit.Webhook{ID: "w2", URL: "https://hooks.example.com/b", Format: jit.FormatPlain, CreatedAt: t0})
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetWebhook("w1")
		if err != nil {
			return err
		}
		if got.Secret != w.Secret || got.Cursor != 7 || !slices.Equal(got.Events, w.Events) || !slices.Equal(got.Groups, w.Groups) || !got.CreatedAt.Equal(t0) {
			t.Errorf("GetWebhook = %+v, want %+v", got, w)
		}
		all, err := tx.ListWebhooks()
		if err != nil {
			return err
		}
		if len(all) != 2 || all[0].ID != "w1" || all[1].Events == nil || all[1].Groups == nil {
			t.Errorf("ListWebhooks = %+v", all)
		}
		if _, err := tx.GetWebhook("nope"); jit.ErrorCode(err) != jit.ENotFound {
			t.Errorf("GetWebhook(nope) = %v, want not found", err)
		}
		return nil
	})

	d := func(seq int64, next time.Time) jit.Delivery {
		return jit.Delivery{Seq: seq, Kind: jit.KindGrantOpened, NextAttempt: next, CreatedAt: t0}
	}
	update(t, s, func(tx store.Tx) error {
		ok, err := tx.QueueDeliveries("w1", 7, 12, []jit.Delivery{d(9, t0.Add(2*time.Second)), d(11, t0.Add(time.Second))})
		if err == nil && !ok {
			t.Error("QueueDeliveries from the cursor refused")
		}
		return err
	})
	update(t, s, func(tx store.Tx) error {
		ok, err := tx.QueueDeliveries("w1", 7, 20, []jit.Delivery{d(9, t0)})
		if err == nil && ok {
			t.Error("QueueDeliveries from a stale cursor accepted")
		}
		return err
	})
	view(t, s, func(tx store.Tx) error {
		due, err := tx.ListDeliveries(store.DeliveryFilter{DueBy: t0.Add(3 * time.Second), Limit: 10})
		if err != nil {
			return err
		}
		if len(due) != 2 || due[0].Seq != 11 || due[1].Seq != 9 || due[0].Status != jit.DeliveryPending || due[0].WebhookID != "w1" {
			t.Errorf("due deliveries = %+v, want 11 then 9, pending", due)
		}
		if due, _ := tx.ListDeliveries(store.DeliveryFilter{DueBy: t0.Add(1500 * time.Millisecond)}); len(due) != 1 {
			t.Errorf("due by 1.5s: %+v, want one", due)
		}
		next, ok, err := tx.NextDeliveryDue()
		if err != nil || !ok || !next.Equal(t0.Add(time.Second)) {
			t.Errorf("NextDeliveryDue = %v %v %v", next, ok, err)
		}
		w, _ := tx.GetWebhook("w1")
		if w.Cursor != 12 {
			t.Errorf("cursor = %d, want 12", w.Cursor)
		}
		return nil
	})

	claim := d(9, t0.Add(time.Minute))
	claim.WebhookID, claim.Status, claim.Attempts = "w1", jit.DeliveryPending, 1
	update(t, s, func(tx store.Tx) error {
		if ok, err := tx.SetDelivery(claim, 0); err != nil || !ok {
			t.Errorf("claim: %v %v", ok, err)
		}
		if ok, err := tx.SetDelivery(claim, 0); err != nil || ok {
			t.Errorf("second claim of the same attempt: %v %v, want refused", ok, err)
		}
		done := claim
		at := t0.Add(3 * time.Second)
		done.Status, done.DeliveredAt, done.LastStatusCode = jit.DeliveryDelivered, &at, 204
		if ok, err := tx.SetDelivery(done, 1); err != nil || !ok {
			t.Errorf("record: %v %v", ok, err)
		}
		if ok, err := tx.SetDelivery(claim, 1); err != nil || ok {
			t.Errorf("changing a delivered delivery: %v %v, want refused", ok, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		ds, err := tx.ListDeliveries(store.DeliveryFilter{WebhookID: "w1"})
		if err != nil {
			return err
		}
		if len(ds) != 2 || ds[0].Seq != 11 || ds[1].Status != jit.DeliveryDelivered || ds[1].Attempts != 1 || ds[1].DeliveredAt == nil || ds[1].LastStatusCode != 204 {
			t.Errorf("deliveries = %+v", ds)
		}
		if page, _ := tx.ListDeliveries(store.DeliveryFilter{WebhookID: "w1", BeforeSeq: 11}); len(page) != 1 || page[0].Seq != 9 {
			t.Errorf("deliveries before 11 = %+v", page)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.DeleteWebhook("w1") })
	view(t, s, func(tx store.Tx) error {
		ds, err := tx.ListDeliveries(store.DeliveryFilter{WebhookID: "w1"})
		if len(ds) != 0 {
			t.Errorf("deliveries of a deleted webhook: %+v", ds)
		}
		return err
	})
	err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteWebhook("w1") })
	if jit.ErrorCode(err) != jit.ENotFound {
		t.Errorf("deleting again: %v, want not found", err)
	}
}
