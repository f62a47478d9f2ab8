package jit

import (
	"testing"
	"time"
)

// FuzzISODuration checks that every duration the parser accepts is short,
// within 400 days, and survives a round trip through FormatISODuration.
func FuzzISODuration(f *testing.F) {
	for _, s := range []string{"PT3H", "PT1H30M", "P1D", "PT0.5S", "pt5m", "P1W", "P1DT2H3M4.5S", "PTNaNS", "PT1H1H", "PT1e3S", "P400D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseISODuration(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseISODuration(%q) = %v with error %v", s, d, err)
			}
			return
		}
		if len(s) > MaxISODurationLen || d < 0 || d > 400*24*time.Hour {
			t.Fatalf("ParseISODuration(%q) = %v: out of bounds", s, d)
		}
		back, err := ParseISODuration(FormatISODuration(d))
		if err != nil || back != d {
			t.Fatalf("round trip of %q (%v) via %q = %v, %v", s, d, FormatISODuration(d), back, err)
		}
	})
}
