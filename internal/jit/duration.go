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

// ParseISODuration parses an ISO 8601 duration of days, hours, minutes and
// seconds, such as "PT3H", "PT1H30M", "P1D" or "PT0.5S".
func ParseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok || rest == "" || rest == "T" {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT3H", s)
	}
	var d time.Duration
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT3H", s)
			}
			inTime = true
			rest = rest[1:]
			if rest == "" {
				return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT3H", s)
			}
			continue
		}
		i := strings.IndexAny(rest, "WDHMS")
		if i <= 0 {
			return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT3H", s)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || n < 0 || strings.ContainsAny(rest[:i], "eE+-") {
			return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT3H", s)
		}
		var unit time.Duration
		switch u := rest[i]; {
		case u == 'W' && !inTime:
			unit = 7 * 24 * time.Hour
		case u == 'D' && !inTime:
			unit = 24 * time.Hour
		case u == 'H' && inTime:
			unit = time.Hour
		case u == 'M' && inTime:
			unit = time.Minute
		case u == 'S' && inTime:
			unit = time.Second
		default:
			return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT3H", s)
		}
		if n > float64(400*24*time.Hour/unit) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d += time.Duration(n * float64(unit))
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
