package console

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// actorName is how the activity log names who acted: a user by name, an
// agent by its machine ("agent of web-02"), the server as "ajar".
func actorName(actor string, names map[string]string) string {
	switch {
	case actor == "system":
		return "ajar"
	case strings.HasPrefix(actor, "agent:"):
		id := strings.TrimPrefix(actor, "agent:")
		if n := names[id]; n != "" {
			return "the agent of " + n
		}
		return "the agent of a deleted machine"
	}
	return actor
}

// verbs says what each operation did, to its object (the machine, when
// the event has one).
var verbs = map[string]string{
	jit.OpRequestApprove:     "was granted access to",
	jit.OpRequestRefuse:      "was refused access to",
	jit.OpRequestPending:     "asked, pending approval, for access to",
	jit.OpRequestApproval:    "approved (one of several approvals) a request for",
	jit.OpRequestDeny:        "denied a request for",
	jit.OpRequestExpire:      "let a request wait too long for approval, for",
	jit.OpRequestCancel:      "cancelled a request for",
	jit.OpPolicyCreate:       "enabled JIT on",
	jit.OpPolicyUpdate:       "changed the JIT policy of",
	jit.OpPolicyDelete:       "disabled JIT on",
	jit.OpVMCreate:           "added the machine",
	jit.OpVMDelete:           "deleted the machine",
	jit.OpEnforceApply:       "applied the rules on",
	jit.OpEnforceFail:        "failed to apply the rules on",
	jit.OpAgentEnroll:        "enrolled",
	jit.OpAgentConnect:       "connected from",
	jit.OpAgentDisconnect:    "lost contact with",
	jit.OpDriftDetect:        "found the rules changed by hand on",
	jit.OpDriftRepair:        "repaired the rules on",
	jit.OpSignIn:             "signed in",
	jit.OpUserCreate:         "created a user",
	jit.OpUserDelete:         "deleted a user",
	jit.OpUserSetPassword:    "set a password",
	jit.OpUserSetupLink:      "made a setup link",
	jit.OpTokenCreate:        "created an API token",
	jit.OpTokenRevoke:        "revoked an API token",
	jit.OpRoleBindingCreate:  "gave a role",
	jit.OpRoleBindingDelete:  "removed a role",
	jit.OpClaimMappingCreate: "mapped a claim to a role",
	jit.OpClaimMappingDelete: "removed a claim mapping",
	jit.OpGroupCreate:        "created a group",
}

// sentence says an event in words: who did what to which machine, and
// why (a justification, a reason or the error), with times in UTC (the
// page's script shows them in the viewer's time zone only in <time>
// elements; these stay as the log has them).
func sentence(e jit.Event, vm string, names map[string]string) string {
	var d map[string]any
	json.Unmarshal(e.Details, &d)
	str := func(k string) string {
		if v, ok := d[k]; ok && v != nil {
			if s, ok := v.(string); ok {
				return s
			}
			return fmt.Sprint(v)
		}
		return ""
	}
	who := actorName(e.Actor, names)
	port := func() string {
		p := "port " + str("port")
		if pr := str("protocol"); pr != "" && pr != jit.ProtoAny {
			p += "/" + pr
		}
		return p
	}
	var s string
	switch e.Operation {
	case jit.OpGrantOpen:
		s = fmt.Sprintf("%s opened %s on %s for %s until %s", who, port(), vm, str("source"), detailTime(str("endTime")))
		if u := str("user"); u != "" && u != e.Actor {
			s += " (for " + u + ")"
		}
	case jit.OpGrantExpire:
		s = fmt.Sprintf("The access of %s to %s on %s from %s ended on time", str("user"), port(), vm, str("source"))
	case jit.OpGrantRevoke:
		s = fmt.Sprintf("%s revoked the access of %s to %s on %s from %s", who, str("user"), port(), vm, str("source"))
	case jit.OpGrantSupersede:
		s = fmt.Sprintf("A newer grant replaced the access of %s to %s on %s from %s", str("user"), port(), vm, str("source"))
	case jit.OpGrantShorten:
		s = fmt.Sprintf("%s shortened the access of %s to %s on %s", who, str("user"), port(), vm)
	default:
		verb := verbs[e.Operation]
		if verb == "" {
			verb = e.Operation
		}
		s = who + " " + verb
		if vm != "" {
			s += " " + vm
		} else {
			for _, k := range []string{"user", "group", "name"} {
				if v := str(k); v != "" && v != e.Actor {
					s += " " + v
					break
				}
			}
		}
		if r := str("role"); r != "" && (e.Operation == jit.OpRoleBindingCreate || e.Operation == jit.OpRoleBindingDelete) {
			g := str("group")
			if g == jit.AllGroups {
				g = "all groups"
			}
			s += " (" + r + " in " + g + ")"
		}
	}
	for _, k := range []string{"justification", "reason", "error"} {
		if why := str(k); why != "" {
			s += ": " + strings.TrimSuffix(why, ".")
			break
		}
	}
	if strings.HasPrefix(s, "the ") {
		s = "The " + s[4:]
	}
	return s + "."
}

// detailTime shows an RFC 3339 time of an event's details the way the console
// shows times.
func detailTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return fmtTime(t)
}
