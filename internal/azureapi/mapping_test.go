package azureapi

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ajarhq/ajar/internal/jit"
)

func TestGrantStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		status        string
		end           time.Time
		want, wantWhy string
	}{
		{jit.GrantActive, now.Add(time.Minute), StatusInitiated, ReasonUserRequested},
		{jit.GrantActive, now.Add(-time.Second), StatusRevoked, ReasonExpired}, // the expirer has not run yet
		{jit.GrantExpired, now.Add(-time.Hour), StatusRevoked, ReasonExpired},
		{jit.GrantRevoked, now.Add(time.Hour), StatusRevoked, ReasonUserRequested},
		{jit.GrantSuperseded, now.Add(time.Hour), StatusRevoked, ReasonNewerRequestInitiated},
	} {
		s, why := grantStatus(jit.Grant{Status: c.status, EndTime: c.end}, now)
		if s != c.want || why != c.wantWhy {
			t.Errorf("%s ending %s: got %s/%s, want %s/%s", c.status, c.end, s, why, c.want, c.wantWhy)
		}
	}
}

func TestRequestView(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	end := now.Add(time.Hour)
	r := jit.Request{User: "alice", Justification: "why", CreatedAt: now, Grants: []jit.Grant{
		{VMID: "a", Port: 22, Source: "10.0.0.1/32", EndTime: end, Status: jit.GrantActive},
		{VMID: "a", Port: 22, Source: "2001:db8::/64", EndTime: end, Status: jit.GrantActive},
		{VMID: "a", Port: 3389, Source: "10.0.0.1/32", EndTime: end, Status: jit.GrantRevoked},
		{VMID: "b", Port: 22, Source: "192.0.2.0/24", EndTime: end, Status: jit.GrantSuperseded},
	}}
	got := requestView(r, now, func(id string) string { return "/vm/" + id })
	want := AccessRequest{StartTimeUTC: now, Requestor: "alice", Justification: "why", VirtualMachines: []RequestVM{
		{ID: "/vm/a", Ports: []RequestPort{
			{Number: 22, AllowedSourceAddressPrefixes: []string{"10.0.0.1", "2001:db8::/64"}, EndTimeUTC: end, Status: StatusInitiated, StatusReason: ReasonUserRequested},
			{Number: 3389, AllowedSourceAddressPrefix: "10.0.0.1", EndTimeUTC: end, Status: StatusRevoked, StatusReason: ReasonUserRequested},
		}},
		{ID: "/vm/b", Ports: []RequestPort{
			{Number: 22, AllowedSourceAddressPrefix: "192.0.2.0/24", EndTimeUTC: end, Status: StatusRevoked, StatusReason: ReasonNewerRequestInitiated},
		}},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestMatch(t *testing.T) {
	pat := split("resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}")
	for _, c := range []struct {
		path string
		ok   bool
		want map[string]string
	}{
		{"subscriptions/s/resourceGroups/RG/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default", true,
			map[string]string{"sub": "s", "rg": "RG", "loc": "westeurope", "name": "default"}},
		{"SUBSCRIPTIONS/s/resourcegroups/rg/PROVIDERS/microsoft.security/Locations/l/JITNETWORKACCESSPOLICIES/n", true,
			map[string]string{"sub": "s", "rg": "rg", "loc": "l", "name": "n"}},
		{"subscriptions/s/resourceGroups//providers/Microsoft.Security/locations/l/jitNetworkAccessPolicies/n", false, nil},
		{"subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/locations/l/jitNetworkAccessPolicies/n", false, nil},
		{"subscriptions/s/resourceGroups/rg/providers/Microsoft.Security/locations/l/jitNetworkAccessPolicies", false, nil},
	} {
		got, ok := match(splitPath(c.path), pat)
		if ok != c.ok || cmp.Diff(c.want, got) != "" {
			t.Errorf("%s: got %v %v, want %v %v", c.path, got, ok, c.want, c.ok)
		}
	}
}

func splitPath(p string) []string { return strings.Split(p, "/") }

func TestPortView(t *testing.T) {
	stored := jit.PortRule{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"10.0.0.0/24"}, MaxRequestAccessDuration: "PT24H"}
	normalized := PortRule{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefix: "10.0.0.0/24", MaxRequestAccessDuration: "PT24H"}
	for _, c := range []struct {
		name    string
		written *jit.PortRuleText
		want    PortRule
	}{
		{"none written", nil, normalized},
		{"as written", &jit.PortRuleText{Protocol: "tcp", AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "P1D"},
			PortRule{Number: 22, Protocol: "tcp", AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "P1D"}},
		{"a list of one stays a list", &jit.PortRuleText{Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"10.0.0.7/24"}, MaxRequestAccessDuration: "PT24H"},
			PortRule{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefixes: []string{"10.0.0.7/24"}, MaxRequestAccessDuration: "PT24H"}},
		{"protocol left out", &jit.PortRuleText{AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "P1D"},
			PortRule{Number: 22, Protocol: "TCP", AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "P1D"}},
		{"duration left out, since changed from its default", &jit.PortRuleText{Protocol: "tcp", AllowedSourceAddressPrefix: "10.0.0.7/24"}, normalized},
		{"stale prefix", &jit.PortRuleText{Protocol: "tcp", AllowedSourceAddressPrefix: "10.0.1.7/24", MaxRequestAccessDuration: "P1D"}, normalized},
		{"stale duration", &jit.PortRuleText{Protocol: "tcp", AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "PT3H"}, normalized},
		{"stale protocol", &jit.PortRuleText{Protocol: "udp", AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "P1D"}, normalized},
		{"invalid", &jit.PortRuleText{Protocol: "icmp", AllowedSourceAddressPrefix: "10.0.0.7/24", MaxRequestAccessDuration: "P1D"}, normalized},
	} {
		if d := cmp.Diff(c.want, portView(stored, c.written)); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
	}
}
