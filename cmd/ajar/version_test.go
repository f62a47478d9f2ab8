package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runAlone(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	return out.String() + errb.String(), err
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := runAlone(t, args...)
		if err != nil || !strings.HasPrefix(out, "ajar ") || !strings.Contains(out, "(commit ") {
			t.Errorf("ajar %v: %v, printed %q", args, err, out)
		}
	}
}

// ajar completion writes each shell's script, and the completions it
// drives come from the commands.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_ajar", "zsh": "#compdef ajar", "fish": "complete -c ajar"} {
		out, err := runAlone(t, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("ajar completion %s: %v, no %q in %.200q", shell, err, want, out)
		}
	}
	out, err := runAlone(t, "__complete", "gr")
	if err != nil || !strings.Contains(out, "grant\t") || !strings.Contains(out, "group\t") {
		t.Errorf("completing \"gr\": %v, %q", err, out)
	}
	out, err = runAlone(t, "__complete", "jit", "enable", "db-7", "--ma")
	if err != nil || !strings.Contains(out, "--max") {
		t.Errorf("completing a flag: %v, %q", err, out)
	}
}
