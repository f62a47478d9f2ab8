package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/ajarhq/ajar/internal/webhook"
)

// webhookFlags are the --webhook-* flags: how webhooks are delivered.
type webhookFlags struct {
	allowHTTP  bool
	timeout    time.Duration
	backoffMin time.Duration
	attempts   int
}

func (w *webhookFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&w.allowHTTP, "webhook-allow-http", false, "allow webhooks with http:// URLs to any host (default: https, or http to loopback only)")
	fs.DurationVar(&w.timeout, "webhook-timeout", 10*time.Second, "how long one webhook delivery attempt may take")
	fs.DurationVar(&w.backoffMin, "webhook-retry-min", 2*time.Second, "the wait after a webhook's first failed attempt; it doubles with each failure, up to an hour")
	fs.IntVar(&w.attempts, "webhook-attempts", 15, "attempts of a webhook delivery before it is given up")
}

func (w *webhookFlags) check() error {
	switch {
	case w.timeout < 100*time.Millisecond || w.timeout > 5*time.Minute:
		return fmt.Errorf("--webhook-timeout must be from 100ms to 5m, got %s", w.timeout)
	case w.backoffMin < 10*time.Millisecond || w.backoffMin > time.Hour:
		return fmt.Errorf("--webhook-retry-min must be from 10ms to 1h, got %s", w.backoffMin)
	case w.attempts < 1 || w.attempts > 100:
		return fmt.Errorf("--webhook-attempts must be from 1 to 100, got %d", w.attempts)
	}
	return nil
}

func (w *webhookFlags) config() webhook.Config {
	return webhook.Config{Timeout: w.timeout, BackoffMin: w.backoffMin, MaxAttempts: w.attempts}
}
