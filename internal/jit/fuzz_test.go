package jit

import (
	"encoding/json"
	"reflect"
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

// FuzzParsePrefix checks that an accepted address or prefix is masked, not
// IPv4-mapped, and parses back to itself.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "198.51.100.7/24", "2001:db8::1", "2001:db8::/32", "*", "Internet", "::ffff:1.2.3.4/120", "fe80::1%eth0", "0.0.0.0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %v", s, p)
		}
		back, err := ParsePrefix(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePrefix(%q) = %v; again = %v, %v", s, p, back, err)
		}
	})
}

// FuzzPolicyJSON decodes a policy as the API does and checks that what
// ValidatePolicy accepts is within the limits and already canonical.
func FuzzPolicyJSON(f *testing.F) {
	for _, s := range []string{
		`{"ports":[{"number":22,"protocol":"TCP","allowedSourceAddressPrefixes":["198.51.100.0/24"],"maxRequestAccessDuration":"PT3H"}]}`,
		`{"ports":[{"number":3389,"protocol":"*"},{"number":22,"protocol":"udp","allowedSourceAddressPrefixes":["*"]}]}`,
		`{"ports":[{"number":0}]}`, `{"ports":[]}`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Policy
		if json.Unmarshal(data, &p) != nil || ValidatePolicy(&p) != nil {
			return
		}
		if len(p.Ports) < 1 || len(p.Ports) > 64 {
			t.Fatalf("accepted %d ports", len(p.Ports))
		}
		for _, r := range p.Ports {
			if r.Number < 1 || r.Number > 65535 || len(r.AllowedSourceAddressPrefixes) > 256 {
				t.Fatalf("accepted rule %+v", r)
			}
			if d := r.MaxDuration(); d < MinMaxDuration || d > MaxMaxDuration {
				t.Fatalf("accepted maximum %v", d)
			}
		}
		again := p
		again.Ports = append([]PortRule(nil), p.Ports...)
		for i := range again.Ports {
			again.Ports[i].AllowedSourceAddressPrefixes = append([]string(nil), p.Ports[i].AllowedSourceAddressPrefixes...)
		}
		if err := ValidatePolicy(&again); err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("canonical policy %+v changed on validation: %+v, %v", p, again, err)
		}
	})
}

// FuzzAccessRequestJSON decodes an access request as the API does and
// checks that what CheckRequestShape accepts is within the limits.
func FuzzAccessRequestJSON(f *testing.F) {
	for _, s := range []string{
		`{"virtualMachines":[{"id":"abc","ports":[{"number":22,"duration":"PT1H"}]}],"justification":"fix it"}`,
		`{"virtualMachines":[{"id":"a"},{"id":"a"}]}`, `{"virtualMachines":[]}`, `{"justification":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r AccessRequest
		if json.Unmarshal(data, &r) != nil || CheckRequestShape(&r) != nil {
			return
		}
		if n := len(r.VirtualMachines); n < 1 || n > 100 || len(r.Justification) > MaxJustification {
			t.Fatalf("accepted %d VMs, justification of %d bytes", n, len(r.Justification))
		}
		seen := map[string]bool{}
		for _, v := range r.VirtualMachines {
			if v.ID == "" || seen[v.ID] || len(v.Ports) > 64 {
				t.Fatalf("accepted VM %+v", v)
			}
			seen[v.ID] = true
		}
	})
}
