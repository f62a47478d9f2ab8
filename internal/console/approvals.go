package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// requestsPage is the approval queue: the pending requests the user may
// decide, and the user's own recent requests with their state.
type requestsPage struct {
	base
	Queue []requestRow
	Mine  []requestRow
}

type requestRow struct {
	ID, User, Group, Status, Justification, Asked, Approvals, Created, WaitsUntil, Decisions string
	Pending                                                                                  bool
}

// requestRowOf shows a request; names maps VM ids to names (a VM not in
// it shows by id).
// requestVMNames names the VMs the requests ask for (those a may read).
func (c *Console) requestVMNames(ctx context.Context, a *control.Actor, reqs []jit.Request) (map[string]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.Asked == nil {
			continue
		}
		for _, vr := range r.Asked.VirtualMachines {
			if !seen[vr.ID] && len(ids) < control.MaxPage {
				seen[vr.ID] = true
				ids = append(ids, vr.ID)
			}
		}
	}
	return c.ctl.VMNames(ctx, a, ids)
}

func requestRowOf(r jit.Request, names map[string]string) requestRow {
	row := requestRow{ID: r.ID, User: r.User, Group: r.Group, Status: r.Status, Justification: r.Justification,
		Created: fmtTime(r.CreatedAt), Pending: r.Status == jit.RequestPending}
	if r.ExpiresAt != nil && row.Pending {
		row.WaitsUntil = fmtTime(*r.ExpiresAt)
	}
	if r.Asked != nil {
		var parts []string
		for _, vr := range r.Asked.VirtualMachines {
			for _, p := range vr.Ports {
				vm := vr.ID
				if n := names[vr.ID]; n != "" {
					vm = n
				}
				s := fmt.Sprintf("%s port %d", vm, p.Number)
				if p.Duration != "" {
					s += " for " + p.Duration
				}
				parts = append(parts, s)
			}
		}
		row.Asked = strings.Join(parts, "; ")
	}
	n := 0
	var ds []string
	for _, d := range r.Decisions {
		verdict := "denied"
		if d.Approve {
			verdict, n = "approved", n+1
		}
		s := d.User + " " + verdict
		if d.Reason != "" {
			s += ": " + d.Reason
		}
		ds = append(ds, s)
	}
	row.Decisions = strings.Join(ds, "; ")
	if r.Required > 0 {
		row.Approvals = fmt.Sprintf("%d of %d", n, r.Required)
	}
	return row
}

func (c *Console) requests(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	queue, _, err := c.ctl.ListPending(r.Context(), a, control.MaxPage, "")
	if err != nil {
		return err
	}
	mine, _, err := c.ctl.ListRequests(r.Context(), a, control.RequestListFilter{User: a.Name(), Limit: 50})
	if err != nil {
		return err
	}
	names, err := c.requestVMNames(r.Context(), a, append(append([]jit.Request(nil), queue...), mine...))
	if err != nil {
		return err
	}
	p := requestsPage{base: c.base(a, "Requests", "requests")}
	for _, q := range queue {
		p.Queue = append(p.Queue, requestRowOf(q, names))
	}
	for _, m := range mine {
		p.Mine = append(p.Mine, requestRowOf(m, names))
	}
	switch r.URL.Query().Get("done") {
	case "pending":
		p.Notice = "Your request waits for approval; its ports open once approved."
	case "approved":
		p.Notice = "Request approved."
	case "denied":
		p.Notice = "Request denied."
	case "cancelled":
		p.Notice = "Request cancelled."
	}
	return c.render(w, r, http.StatusOK, "requests.html", p)
}

// decideRequest approves, denies or cancels the request of the path.
func (c *Console) decideRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	id, reason := r.PathValue("id"), r.PostForm.Get("reason")
	var err error
	done := ""
	switch r.PathValue("action") {
	case "approve":
		_, err = c.ctl.Approve(r.Context(), a, id, reason)
		done = "approved"
	case "deny":
		_, err = c.ctl.Deny(r.Context(), a, id, reason)
		done = "denied"
	case "cancel":
		_, err = c.ctl.Cancel(r.Context(), a, id)
		done = "cancelled"
	default:
		return jit.Errorf(jit.ENotFound, "no such page")
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/requests?done="+url.QueryEscape(done), http.StatusSeeOther)
	return nil
}
