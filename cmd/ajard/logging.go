package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxLogValue is the most of one logged value ajard writes: request paths,
// user names, headers and error messages can come from anyone, and no
// client may grow the server's log faster than by this much per line and
// value.
const MaxLogValue = 512

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: cutAttr})), nil
}

// cutAttr cuts every text value of a log record (the message too) to
// MaxLogValue bytes, saying how much was cut.
func cutAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); len(s) > MaxLogValue {
			a.Value = slog.StringValue(cut(s))
		}
	case slog.KindAny:
		var s string
		switch v := a.Value.Any().(type) {
		case error:
			s = v.Error()
		case fmt.Stringer:
			s = v.String()
		default:
			return a
		}
		if len(s) > MaxLogValue {
			a.Value = slog.StringValue(cut(s))
		}
	}
	return a
}

func cut(s string) string {
	n := MaxLogValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s…(%d more bytes)", s[:n], len(s)-n)
}

// dsnSecret matches a password in a key=value DSN, quoted or not.
var dsnSecret = regexp.MustCompile(`(?i)\b((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]*)`)

// redactDSN hides the secrets of a database DSN: a URL's password (in its
// user info or its query string) and key=value passwords.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if u, err := url.Parse(dsn); err == nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "***")
			}
			q := u.Query()
			for k := range q {
				if l := strings.ToLower(k); l == "password" || l == "sslpassword" {
					q[k] = []string{"***"}
				}
			}
			if len(q) > 0 {
				u.RawQuery = q.Encode()
			}
			return strings.Replace(u.String(), "%2A%2A%2A", "***", -1)
		}
		// Unparsable: hide all the user info.
		rest := dsn[i+3:]
		if j := strings.LastIndex(rest, "@"); j >= 0 {
			dsn = dsn[:i+3] + "***" + rest[j:]
		}
	}
	return dsnSecret.ReplaceAllString(dsn, "$1=***")
}

// dsnPasswords returns the passwords a DSN holds, to hide them wherever
// they appear (a driver's error may quote its DSN).
func dsnPasswords(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && strings.Contains(dsn, "://") {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p)
		}
		for k, vs := range u.Query() {
			if k := strings.ToLower(k); k == "password" || k == "sslpassword" {
				out = append(out, vs...)
			}
		}
	}
	for _, m := range dsnSecret.FindAllStringSubmatch(dsn, -1) {
		if v := strings.Trim(m[2], "'"); v != "" {
			out = append(out, v, m[2])
		}
	}
	return out
}

// redactError hides the passwords of dsn in err's message.
func redactError(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, p := range dsnPasswords(dsn) {
		for _, form := range []string{p, url.QueryEscape(p), url.PathEscape(p)} {
			if form != "" && strings.Contains(msg, form) {
				msg, changed = strings.ReplaceAll(msg, form, "***"), true
			}
		}
	}
	if !changed {
		return err
	}
	return &redacted{msg: msg, err: err}
}

// redacted is an error whose message hides secrets of the one it wraps.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
