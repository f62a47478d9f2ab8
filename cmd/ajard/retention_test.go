package main

import (
	"io"
	"strings"
	"testing"
)

func TestRetentionFlags(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		args []string
		env  func(string) string
		want string // "" = valid
	}{
		{[]string{"--log-retention", "400d", "--log-archive-dir", "/x"}, env(), ""},
		{nil, env("AJAR_LOG_RETENTION", "9600h", "AJAR_LOG_ARCHIVE_DIR", "/x"), ""},
		{[]string{"--log-retention", "400d"}, env(), "go together"},
		{[]string{"--log-archive-dir", "/x"}, env(), "go together"},
		{[]string{"--log-retention", "1h", "--log-archive-dir", "/x"}, env(), "at least 1d"},
		{[]string{"--log-retention", "0d", "--log-archive-dir", "/x"}, env(), "number of days"},
		{[]string{"--log-retention", "soon", "--log-archive-dir", "/x"}, env(), "duration"},
		{nil, env("AJAR_LOG_RETENTION", "forever", "AJAR_LOG_ARCHIVE_DIR", "/x"), "AJAR_LOG_RETENTION"},
	} {
		_, err := parseConfig(tc.args, tc.env, io.Discard)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}
