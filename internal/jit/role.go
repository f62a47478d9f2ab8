package jit

import "fmt"

// Roles a user can hold in a group.
const (
	RoleAdmin              = "admin"
	RoleJITAdmin           = "jit-admin"
	RoleRequester          = "requester"
	RoleRequesterAnySource = "requester-any-source"
	RoleReader             = "reader"
	RoleApprover           = "approver"
)

// AllGroups is the group of a binding that applies everywhere.
const AllGroups = "*"

// Permission is something a role allows in a group.
type Permission int

// Permissions.
const (
	PermRead             Permission = iota // read VMs, policies, grants, the log
	PermRequest                            // request access for one's own address
	PermRequestAnySource                   // request access for any source
	PermManagePolicy                       // create, change, delete JIT policies
	PermRevokeAny                          // revoke anyone's grant
	PermManageVMs                          // register and delete VMs
	PermAdmin                              // users, tokens, bindings, groups
	PermApprove                            // approve or deny others' pending requests
)

var rolePerms = map[string][]Permission{
	RoleAdmin:              {PermRead, PermRequest, PermRequestAnySource, PermManagePolicy, PermRevokeAny, PermManageVMs, PermAdmin},
	RoleJITAdmin:           {PermRead, PermManagePolicy, PermRevokeAny, PermManageVMs},
	RoleRequesterAnySource: {PermRead, PermRequest, PermRequestAnySource},
	RoleRequester:          {PermRead, PermRequest},
	RoleReader:             {PermRead},
	RoleApprover:           {PermRead, PermApprove},
}

// ValidRole reports whether role is a known role.
func ValidRole(role string) error {
	if _, ok := rolePerms[role]; !ok {
		return fmt.Errorf("unknown role %q (roles: admin, jit-admin, requester, requester-any-source, reader, approver)", role)
	}
	return nil
}

// Can reports whether the bindings give perm in group. Group "" asks for
// the permission in every group, as global operations need.
func Can(bindings []RoleBinding, perm Permission, group string) bool {
	for _, b := range bindings {
		if b.Group != AllGroups && (group == "" || b.Group != group) {
			continue
		}
		for _, p := range rolePerms[b.Role] {
			if p == perm {
				return true
			}
		}
	}
	return false
}

// Groups returns the groups in which the bindings give perm, and whether
// they give it in all groups.
func Groups(bindings []RoleBinding, perm Permission) (groups []string, all bool) {
	for _, b := range bindings {
		for _, p := range rolePerms[b.Role] {
			if p != perm {
				continue
			}
			if b.Group == AllGroups {
				return nil, true
			}
			groups = append(groups, b.Group)
		}
	}
	return groups, false
}

// Bindings returns the bindings that give perm somewhere.
func Bindings(bindings []RoleBinding, perm Permission) []RoleBinding {
	var out []RoleBinding
	for _, b := range bindings {
		for _, p := range rolePerms[b.Role] {
			if p == perm {
				out = append(out, b)
			}
		}
	}
	return out
}
