package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// Bad --webhook-* flags are refused naming the flag; good ones reach the
// deliverer's configuration.
func TestWebhookFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string // in the error; "" = accepted
	}{
		{nil, ""},
		{[]string{"--webhook-timeout", "1ms"}, "--webhook-timeout"},
		{[]string{"--webhook-timeout", "10m"}, "--webhook-timeout"},
		{[]string{"--webhook-retry-min", "1ms"}, "--webhook-retry-min"},
		{[]string{"--webhook-attempts", "0"}, "--webhook-attempts"},
		{[]string{"--webhook-attempts", "101"}, "--webhook-attempts"},
		{[]string{"--webhook-allow-http", "--webhook-timeout", "3s", "--webhook-retry-min", "500ms", "--webhook-attempts", "5"}, ""},
	} {
		c, err := parseConfig(tc.args, getenv, io.Discard)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err = %v, want one naming %s", tc.args, err, tc.want)
		}
		if tc.want == "" && len(tc.args) > 0 {
			cfg := c.webhooks.config()
			if !c.webhooks.allowHTTP || cfg.Timeout != 3*time.Second || cfg.BackoffMin != 500*time.Millisecond || cfg.MaxAttempts != 5 {
				t.Errorf("%v: config %+v", tc.args, cfg)
			}
		}
	}
}
