// Package webhook delivers activity events to the webhooks admins
// subscribe (plain JSON, Slack, Microsoft Teams), signed with each
// webhook's secret, from a durable outbox in the store: each webhook has a
// cursor in the hash-chained activity log; the events after it that the
// webhook wants are queued as deliveries in the same transaction that
// moves the cursor, and each delivery is attempted until a 2xx answer
// (or its attempts run out), with exponential backoff and jitter. An
// attempt is claimed in the store before it is sent, so a crash repeats
// at most the attempts under way: delivery is at least once, and
// receivers deduplicate on the Ajar-Event-Id header. Of several servers
// sharing a database, the one leading "webhooks" delivers.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/store"
)

// Config tunes a Deliverer; zero fields take their defaults.
type Config struct {
	// PublicURL is the console's external URL, for links in messages
	// ("" for none).
	PublicURL string
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets before it fails
	// (default 15: about five hours with the default backoff).
	MaxAttempts int
	// BackoffMin and BackoffMax bound the wait after a failed attempt: it
	// doubles from BackoffMin (default 2 s) up to BackoffMax (default 1 h),
	// and a random half of it is taken off (jitter).
	BackoffMin, BackoffMax time.Duration
	// Poll is how often the deliverer looks for events committed by other
	// servers (default 1 s); events committed through Watch's store are
	// seen at once.
	Poll time.Duration
	// Batch is how many deliveries of one webhook one worker claims and
	// sends in order (default 20).
	Batch int
	// Client sends the requests (default: an http.Client that does not
	// follow redirects).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Deliverer queues and sends webhook deliveries.
type Deliverer struct {
	st   store.Store
	log  *slog.Logger
	cfg  Config
	kick chan struct{}
}

// New returns a Deliverer over st.
func New(st store.Store, log *slog.Logger, cfg Config) *Deliverer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 15
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 2 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = time.Hour
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 20
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Deliverer{st: st, log: log, cfg: cfg, kick: make(chan struct{}, 1)}
}

// UsePublicURL sets the console's external URL for links in messages;
// call it before Run.
func (d *Deliverer) UsePublicURL(u string) { d.cfg.PublicURL = u }

// Kick tells the deliverer that events were committed.
func (d *Deliverer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Watch returns st, kicking the deliverer after every update that
// appended activity events: the store to give the control plane.
func (d *Deliverer) Watch(st store.Store) store.Store { return kicking{st, d.Kick} }

type kicking struct {
	store.Store
	kick func()
}

func (k kicking) Update(ctx context.Context, fn func(store.Tx) error) error {
	appended := false
	err := k.Store.Update(ctx, func(tx store.Tx) error {
		appended = false
		return fn(appendTx{tx, &appended})
	})
	if err == nil && appended {
		k.kick()
	}
	return err
}

type appendTx struct {
	store.Tx
	appended *bool
}

func (t appendTx) AppendEvent(events ...*jit.Event) error {
	*t.appended = true
	return t.Tx.AppendEvent(events...)
}

// RunLeading runs Run while this server leads "webhooks" among the servers
// sharing the database; it returns when ctx ends or the store closes.
func (d *Deliverer) RunLeading(ctx context.Context) error {
	for {
		// The lead ends when Run has returned, not when ctx ends: another
		// server must not deliver while this one still does.
		leadCtx, endLead := context.WithCancel(context.WithoutCancel(ctx))
		stopWaiting := context.AfterFunc(ctx, endLead)
		lost, err := d.st.Lead(leadCtx, "webhooks")
		stopWaiting()
		if err != nil {
			endLead()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		d.log.Info("this server delivers webhooks")
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-rctx.Done():
			}
		}()
		d.Run(rctx)
		cancel()
		endLead()
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn("this server no longer delivers webhooks; another one may")
	}
}

// Run queues and sends deliveries until ctx ends, and returns once every
// attempt it started has ended.
func (d *Deliverer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	changes := d.st.Changes(ctx)
	busy := map[string]bool{} // webhooks with a worker
	done := make(chan string)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var exist bool
	var looked time.Time
	for {
		// With no webhook configured, a look costs a read per commit for
		// nothing: look at most every noHooksEvery (a new webhook's cursor
		// starts at its creation, so waiting loses no event).
		if wait := noHooksEvery - time.Since(looked); !exist && !looked.IsZero() && wait > 0 {
			stopTimer(timer)
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		looked = time.Now()
		var err error
		exist, err = d.queue(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Error("webhooks: queue deliveries", "err", err)
		}
		wake := d.cfg.Poll
		var due []string
		var next time.Time
		if exist || err != nil {
			due, next, err = d.due(ctx)
		}
		if err != nil && ctx.Err() == nil {
			d.log.Error("webhooks: read due deliveries", "err", err)
		}
		for _, id := range due {
			if busy[id] {
				continue
			}
			busy[id] = true
			wg.Go(func() {
				d.work(ctx, id)
				select {
				case done <- id:
				case <-ctx.Done():
				}
			})
		}
		// Deliveries due now are with workers, whose end wakes the loop.
		if wait := next.Sub(d.cfg.Now()); !next.IsZero() && wait > 0 {
			wake = min(wake, wait)
		}
		stopTimer(timer)
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-changes:
		case id := <-done:
			delete(busy, id)
		case <-timer.C:
		}
	}
}

func stopTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
}

// noHooksEvery is how often the deliverer looks for webhooks while there
// are none.
const noHooksEvery = time.Second

// scanChunk bounds the events one queueing transaction reads.
const scanChunk = 1000

// queue moves every webhook's cursor to the log's head, queueing a
// delivery of each event after it the webhook wants, chunk by chunk.
// It reports whether there are webhooks (and deliveries may be due).
func (d *Deliverer) queue(ctx context.Context) (bool, error) {
	// First, in a read transaction, whether there is anything to queue:
	// most commits that wake the deliverer leave nothing to do (no
	// webhooks), and should not cost a write transaction.
	behind, exist := false, false
	err := d.st.View(ctx, func(tx store.Tx) error {
		hooks, err := tx.ListWebhooks()
		exist = len(hooks) > 0
		if err != nil || len(hooks) == 0 {
			behind = false
			return err
		}
		head, err := tx.ListEvents(store.EventFilter{Desc: true, Limit: 1})
		behind = false
		for _, w := range hooks {
			behind = behind || (len(head) == 1 && w.Cursor < head[0].Seq)
		}
		return err
	})
	if err != nil || !behind {
		return exist, err
	}
	for {
		more := false
		err := d.st.Update(ctx, func(tx store.Tx) error {
			more = false
			hooks, err := tx.ListWebhooks()
			if err != nil || len(hooks) == 0 {
				return err
			}
			from := hooks[0].Cursor
			for _, w := range hooks {
				from = min(from, w.Cursor)
			}
			events, err := tx.ListEvents(store.EventFilter{AfterSeq: from, Limit: scanChunk})
			if err != nil || len(events) == 0 {
				return err
			}
			last := events[len(events)-1].Seq
			more = len(events) == scanChunk
			now := d.cfg.Now().UTC()
			for _, w := range hooks {
				if w.Cursor >= last {
					continue
				}
				var ds []jit.Delivery
				for i := range events {
					e := &events[i]
					if e.Seq <= w.Cursor {
						continue
					}
					if k := jit.NotificationKind(e); w.Wants(k, e.Group) {
						ds = append(ds, jit.Delivery{Seq: e.Seq, Kind: k, NextAttempt: now, CreatedAt: now})
					}
				}
				if _, err := tx.QueueDeliveries(w.ID, w.Cursor, last, ds); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || !more {
			return true, err
		}
	}
}

// due returns the webhooks with deliveries due now, and when the next
// one not yet due is (zero for none).
func (d *Deliverer) due(ctx context.Context) (ids []string, next time.Time, err error) {
	err = d.st.View(ctx, func(tx store.Tx) error {
		ids, next = nil, time.Time{}
		ds, err := tx.ListDeliveries(store.DeliveryFilter{DueBy: d.cfg.Now(), Limit: 1000})
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, dl := range ds {
			if !seen[dl.WebhookID] {
				seen[dl.WebhookID] = true
				ids = append(ids, dl.WebhookID)
			}
		}
		n, ok, err := tx.NextDeliveryDue()
		if ok {
			next = n
		}
		return err
	})
	return ids, next, err
}

// attempt is one claimed delivery with what sending it needs.
type attempt struct {
	d      jit.Delivery
	event  jit.Event
	vmName string
}

// work claims the webhook's due deliveries, at most Batch, sends them in
// order and records each outcome.
func (d *Deliverer) work(ctx context.Context, id string) {
	var w jit.Webhook
	var claimed []attempt
	now := d.cfg.Now().UTC()
	err := d.st.Update(ctx, func(tx store.Tx) error {
		claimed = nil
		var err error
		if w, err = tx.GetWebhook(id); err != nil {
			return err
		}
		ds, err := tx.ListDeliveries(store.DeliveryFilter{WebhookID: id, DueBy: now, Limit: d.cfg.Batch})
		if err != nil {
			return err
		}
		// The claim: should this server stop before it records the
		// outcome, the delivery is due again once every claimed attempt
		// could have timed out, and a backoff more.
		lease := now.Add(time.Duration(len(ds))*d.cfg.Timeout + d.backoff(1))
		for _, dl := range ds {
			c := dl
			c.Attempts++
			c.NextAttempt = lease
			if ok, err := tx.SetDelivery(c, dl.Attempts); err != nil {
				return err
			} else if !ok {
				continue
			}
			a := attempt{d: c}
			evs, err := tx.ListEvents(store.EventFilter{AfterSeq: dl.Seq - 1, Limit: 1})
			if err != nil {
				return err
			}
			if len(evs) == 1 && evs[0].Seq == dl.Seq {
				a.event = evs[0]
			}
			if a.event.VMID != "" {
				if vm, err := tx.GetVM(a.event.VMID); err == nil {
					a.vmName = vm.Name
				} else if jit.ErrorCode(err) != jit.ENotFound {
					return err
				}
			}
			claimed = append(claimed, a)
		}
		return nil
	})
	if err != nil {
		if jit.ErrorCode(err) != jit.ENotFound && ctx.Err() == nil {
			d.log.Error("webhooks: claim deliveries", "webhook", id, "err", err)
		}
		return
	}
	// The outcomes are recorded together, in one commit, once the batch
	// is sent; a crash before then sends the batch again.
	var outcomes []jit.Delivery
	for _, a := range claimed {
		if ctx.Err() != nil {
			break // the claims' lease brings the rest back
		}
		code, err := d.send(ctx, &w, &a)
		if ctx.Err() != nil {
			break
		}
		outcomes = append(outcomes, d.outcome(a.d, code, err))
	}
	if len(outcomes) == 0 {
		return
	}
	err = d.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		for _, o := range outcomes {
			if _, err := tx.SetDelivery(o, o.Attempts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		d.log.Error("webhooks: record deliveries", "webhook", id, "err", err)
	}
}

// send makes one attempt of a delivery.
func (d *Deliverer) send(ctx context.Context, w *jit.Webhook, a *attempt) (int, error) {
	if a.event.Seq == 0 {
		return 0, errors.New("the event is no longer in the activity log")
	}
	body, err := Body(w.Format, &a.event, a.d.Kind, a.vmName, d.cfg.PublicURL)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("the webhook's URL cannot be used")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ajar-webhook/1")
	req.Header.Set(HeaderSignature, Sign(w.Secret, d.cfg.Now(), body))
	req.Header.Set(HeaderEventID, a.event.Hash)
	req.Header.Set(HeaderEventSeq, strconv.FormatInt(a.event.Seq, 10))
	req.Header.Set(HeaderEventKind, a.d.Kind)
	req.Header.Set(HeaderWebhookID, w.ID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(a.d.Attempts))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // without the URL, which may hold a credential (Slack's does)
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", d.cfg.Timeout)
		}
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("answered %s", resp.Status)
		if s := string(bytes.TrimSpace(snippet)); s != "" && jit.Storable(s) {
			msg += ": " + s
		}
		return resp.StatusCode, errors.New(msg)
	}
	return resp.StatusCode, nil
}

// outcome is a claimed delivery after an attempt that answered code
// (0: none) and failed with sendErr (nil: delivered).
func (d *Deliverer) outcome(dl jit.Delivery, code int, sendErr error) jit.Delivery {
	now := d.cfg.Now().UTC()
	out := dl
	out.LastStatusCode = code
	switch {
	case sendErr == nil:
		out.Status, out.DeliveredAt, out.NextAttempt = jit.DeliveryDelivered, &now, now
	case dl.Attempts >= d.cfg.MaxAttempts:
		out.Status, out.LastError, out.NextAttempt = jit.DeliveryFailed, sendErr.Error(), now
	default:
		out.LastError, out.NextAttempt = sendErr.Error(), now.Add(d.backoff(dl.Attempts))
	}
	if sendErr != nil {
		d.log.Warn("webhooks: delivery failed", "webhook", dl.WebhookID, "seq", dl.Seq, "attempt", dl.Attempts, "status", out.Status, "err", sendErr)
	}
	return out
}

// backoff is the wait after the n-th failed attempt: BackoffMin doubled
// n-1 times, at most BackoffMax, less a random part of up to half.
func (d *Deliverer) backoff(n int) time.Duration {
	b := d.cfg.BackoffMin
	for i := 1; i < n && b < d.cfg.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, d.cfg.BackoffMax)
	return b - rand.N(b/2+1)
}
