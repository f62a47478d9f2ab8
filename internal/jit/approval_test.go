package jit

import "testing"

func TestValidatePolicyApproval(t *testing.T) {
	base := func(a *Approval) Policy { return Policy{Ports: []PortRule{{Number: 22, Protocol: "tcp"}}, Approval: a} }
	p := base(nil)
	if err := ValidatePolicy(&p); err != nil || p.Approval != nil {
		t.Fatalf("no rule: %v, %+v", err, p.Approval)
	}
	p = base(&Approval{Required: 2})
	if err := ValidatePolicy(&p); err != nil {
		t.Fatal(err)
	}
	if p.Approval.PendingLifetime != "PT24H" || p.Approval.Lifetime() != DefaultPendingLifetime {
		t.Fatalf("default lifetime: %+v", p.Approval)
	}
	for _, c := range []struct {
		a      Approval
		target string
	}{
		{Approval{Required: 0}, "approval.required"},
		{Approval{Required: -1}, "approval.required"},
		{Approval{Required: MaxApprovers + 1}, "approval.required"},
		{Approval{Required: 1, PendingLifetime: "PT1M"}, "approval.pendingLifetime"},
		{Approval{Required: 1, PendingLifetime: "P8D"}, "approval.pendingLifetime"},
		{Approval{Required: 1, PendingLifetime: "soon"}, "approval.pendingLifetime"},
	} {
		a := c.a
		p := base(&a)
		err := ValidatePolicy(&p)
		if ErrorCode(err) != EInvalid || ErrorTarget(err) != c.target {
			t.Errorf("%+v: got %v (target %q), want invalid %s", c.a, err, ErrorTarget(err), c.target)
		}
	}
}

func TestApproverRole(t *testing.T) {
	b := []RoleBinding{{User: "ann", Role: RoleApprover, Group: "prod"}}
	if !Can(b, PermApprove, "prod") || Can(b, PermApprove, "dev") || Can(b, PermRequest, "prod") {
		t.Fatal("approver role: wrong permissions")
	}
	if err := ValidRole(RoleApprover); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{RoleAdmin, RoleJITAdmin, RoleRequester, RoleReader} {
		if Can([]RoleBinding{{Role: r, Group: "*"}}, PermApprove, "prod") {
			t.Errorf("role %s may approve; only approver may", r)
		}
	}
}
