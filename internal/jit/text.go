package jit

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Storable reports whether s is text that every store keeps: valid UTF-8
// without NUL characters (PostgreSQL refuses both in text).
func Storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// EscapesNUL reports whether JSON text holds an escaped NUL character
// (\u0000), the one way a JSON string carries one.
func EscapesNUL(data []byte) bool {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0 // backslashes just before the u: an odd number escape it
		for k := j - 1; k >= 0 && data[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = j + 1
	}
}
