package console

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// accessPage is My access: the user's live grants on every machine, the
// ones that ended lately, and their requests.
type accessPage struct {
	base
	Grants   []grantRow
	Recent   []jit.Grant
	Requests []requestRow
}

// MyAccessRecent is how many of their ended grants My access lists.
const MyAccessRecent = 20

func (c *Console) access(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	ctx := r.Context()
	grants, _, err := c.ctl.ListGrants(ctx, a, control.GrantListFilter{User: a.Name(), Limit: 200})
	if err != nil {
		return err
	}
	p := accessPage{base: c.base(a, "My access", "access")}
	now := c.ctl.Now()
	for _, g := range grants {
		if g.Status == jit.GrantActive && g.EndTime.After(now) {
			p.Grants = append(p.Grants, grantRow{Grant: g, CanRevoke: a.Can(jit.PermRequest, g.Group) || a.Can(jit.PermRevokeAny, g.Group), Back: "access"})
		} else if len(p.Recent) < MyAccessRecent {
			if g.Status == jit.GrantActive {
				g.Status = jit.GrantExpired // ended by time; the expirer writes it soon
			}
			p.Recent = append(p.Recent, g)
		}
	}
	sort.Slice(p.Grants, func(i, j int) bool { return p.Grants[i].EndTime.Before(p.Grants[j].EndTime) })
	reqs, _, err := c.ctl.ListRequests(ctx, a, control.RequestListFilter{User: a.Name(), Limit: 20})
	if err != nil {
		return err
	}
	names, err := c.requestVMNames(ctx, a, reqs)
	if err != nil {
		return err
	}
	for _, q := range reqs {
		p.Requests = append(p.Requests, requestRowOf(q, names))
	}
	if id := r.URL.Query().Get("opened"); id != "" {
		var opened []string
		for _, g := range p.Grants {
			if g.RequestID == id {
				opened = append(opened, fmt.Sprintf("%s port %d (%s) for %s until %s", g.VMName, g.Port, protoName(g.Protocol), g.Source, fmtTime(g.EndTime)))
			}
		}
		if len(opened) > 0 {
			p.Notice = "Access granted: " + strings.Join(opened, "; ") + "."
		}
	}
	if r.URL.Query().Get("done") == "revoked" {
		for _, g := range grants {
			if g.ID == r.URL.Query().Get("grant") {
				p.Notice = revokedNotice(g)
			}
		}
	}
	return c.render(w, r, http.StatusOK, "access.html", p)
}
