package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// ExportArchive writes to w, as JSON lines, the events an archive cut at
// before takes (the log's oldest events, up to the first at or after
// before). Nothing leaves the log until ConfirmArchive.
func (c *Client) ExportArchive(ctx context.Context, before time.Time, w io.Writer) error {
	return c.Do(ctx, http.MethodGet, "/api/v1/activity/archive"+query("before", before.UTC().Format(time.RFC3339Nano)), nil, w)
}

// ConfirmArchive removes the events up to in.Through from the log: call it
// once they are safely kept.
func (c *Client) ConfirmArchive(ctx context.Context, in jit.ArchiveConfirm) (jit.Archived, error) {
	return send[jit.Archived](ctx, c, http.MethodPost, "/api/v1/activity/archive", in)
}

// Follow backoff bounds.
const (
	followRetryMin = 500 * time.Millisecond
	followRetryMax = 30 * time.Second
)

// FollowEvents calls fn with every event q selects after q.After, in
// sequence order, as the server commits them, until ctx ends (it then
// returns nil), fn fails, or the server refuses the request (bad input,
// a token no longer valid). When the connection fails it connects again,
// with backoff, resuming after the last event fn got, so that none is
// missed or repeated; retry, when not nil, hears of each failure.
func (c *Client) FollowEvents(ctx context.Context, q EventQuery, fn func(jit.Event) error, retry func(error)) error {
	hc := *c.HTTP
	hc.Timeout = 0 // the stream lasts as long as ctx
	wait := followRetryMin
	for {
		got := false
		err := c.follow(ctx, &hc, q, func(e jit.Event) error {
			got = true
			q.After = e.Seq
			return fn(e)
		})
		if ctx.Err() != nil {
			return nil
		}
		var je *jit.Error
		var fe fnError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case errors.As(err, &je) && je.Code != jit.EUnavailable && je.Code != jit.EInternal:
			return err
		}
		if got {
			wait = followRetryMin
		}
		if retry != nil {
			retry(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, followRetryMax)
	}
}

// fnError is the error of FollowEvents' fn, which ends it.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// follow reads one follow stream until it ends.
func (c *Client) follow(ctx context.Context, hc *http.Client, q EventQuery, fn func(jit.Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/activity"+q.values("")+followParam(q), nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return responseError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e jit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("follow: bad event line: %w", err)
		}
		if e.Seq <= q.After {
			continue // never repeat one
		}
		q.After = e.Seq
		if err := fn(e); err != nil {
			return fnError{err}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF // the server ended the stream (it stopped)
}

func followParam(q EventQuery) string {
	if q.values("") == "" {
		return "?follow=1"
	}
	return "&follow=1"
}
