package jit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Policy bounds on a port's maximum request duration.
const (
	MinMaxDuration     = 5 * time.Minute
	MaxMaxDuration     = 24 * time.Hour
	DefaultMaxDuration = 3 * time.Hour
)

// MaxISODurationLen bounds the text of an ISO 8601 duration; the longest
// one worth writing, such as "P400DT23H59M59.999999999S", is far shorter.
const MaxISODurationLen = 32

// maxISODuration bounds the value of any duration parsed, whatever it is
// for; callers apply their own, smaller limits.
const maxISODuration = 400 * 24 * time.Hour

// ParseISODuration parses an ISO 8601 duration of weeks, days, hours,
// minutes and seconds, such as "PT3H", "PT1H30M", "P1D" or "PT0.5S".
// It is strict: each unit at most once and in order (W, D, then after T:
// H, M, S), plain decimal digits, a fraction (at most 9 digits) only on
// the last unit, at most MaxISODurationLen bytes and 400 days.
func ParseISODuration(s string) (time.Duration, error) {
	if len(s) > MaxISODurationLen {
		return 0, fmt.Errorf("duration is longer than %d bytes", MaxISODurationLen)
	}
	bad := func(why string) error {
		return fmt.Errorf("%q is not an ISO 8601 duration such as PT3H: %s", s, why)
	}
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok {
		return 0, bad("it must start with P")
	}
	if rest == "" || rest == "T" {
		return 0, bad("it has no value")
	}
	const units = "WDHMS"
	var d time.Duration
	inTime, last, fraction := false, -1, false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, bad("T appears twice")
			}
			inTime, rest = true, rest[1:]
			if rest == "" {
				return 0, bad("nothing follows T")
			}
			continue
		}
		if fraction {
			return 0, bad("only the last unit may have a fraction")
		}
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		whole := rest[:i]
		frac := ""
		if i < len(rest) && rest[i] == '.' {
			j := i + 1
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			frac, fraction, i = rest[i+1:j], true, j
			if frac == "" || len(frac) > 9 {
				return 0, bad("a fraction needs 1 to 9 digits")
			}
		}
		if whole == "" {
			return 0, bad("each unit needs a number of plain digits before it")
		}
		if i == len(rest) {
			return 0, bad("the number at the end has no unit")
		}
		u := strings.IndexByte(units, rest[i])
		switch {
		case u < 0:
			return 0, bad(fmt.Sprintf("%q is not a unit (W, D, or after T: H, M, S)", rest[i]))
		case u <= 1 && inTime:
			return 0, bad(fmt.Sprintf("%c belongs before T", rest[i]))
		case u >= 2 && !inTime:
			return 0, bad(fmt.Sprintf("%c belongs after T (months are not supported)", rest[i]))
		case u <= last:
			return 0, bad("units must appear once each, in the order W, D, H, M, S")
		}
		last = u
		unit := [...]time.Duration{7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second}[u]
		if whole = strings.TrimLeft(whole, "0"); whole == "" {
			whole = "0"
		}
		n, err := strconv.ParseUint(whole, 10, 64)
		if err != nil || n > uint64(maxISODuration/unit) {
			return 0, fmt.Errorf("duration %q is longer than 400 days", s)
		}
		d += time.Duration(n) * unit
		if frac != "" {
			f, _ := strconv.ParseUint(frac, 10, 64)
			step := unit // every unit is whole seconds, so the step is exact
			for range len(frac) {
				step /= 10
			}
			d += time.Duration(f) * step
		}
		if d > maxISODuration {
			return 0, fmt.Errorf("duration %q is longer than 400 days", s)
		}
		rest = rest[i+1:]
	}
	return d, nil
}

// FormatISODuration formats d as an ISO 8601 duration, such as "PT3H".
func FormatISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	if d > 0 {
		b.WriteString(strconv.FormatFloat(d.Seconds(), 'f', -1, 64))
		b.WriteString("S")
	}
	return b.String()
}
