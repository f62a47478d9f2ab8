package console

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

type option struct {
	Value, Label string
	Selected     bool
}

// policyRow is one row of the policy editor, as typed.
type policyRow struct {
	Number, Protocol, Sources, Max string
	Invalid                        bool
}

type policyForm struct {
	Rows                 []policyRow
	RequireJustification bool
	CloseConnections     bool
	Recommended          bool // prefilled from the recommendation
	Error                string
}

// editorRow is a policy row as the editor template shows it. Index is
// "__N__" in the template JavaScript clones for new rows.
type editorRow struct {
	policyRow
	Index            string
	Protocols, Maxes []option
}

// Views returns the editor's rows for the template.
func (f policyForm) Views() []editorRow {
	out := make([]editorRow, len(f.Rows))
	for i, r := range f.Rows {
		out[i] = editorRow{policyRow: r, Index: strconv.Itoa(i), Protocols: protocolChoices(r.Protocol), Maxes: maxChoices(r.Max)}
	}
	return out
}

// NewRow is the row Add puts in: TCP from anywhere for up to 3 hours.
func (f policyForm) NewRow() editorRow {
	r := newPolicyRow()
	return editorRow{policyRow: r, Index: "__N__", Protocols: protocolChoices(r.Protocol), Maxes: maxChoices(r.Max)}
}

func newPolicyRow() policyRow {
	return policyRow{Protocol: jit.ProtoTCP, Sources: "*", Max: jit.FormatISODuration(jit.DefaultMaxDuration)}
}

type grantRow struct {
	jit.Grant
	CanRevoke bool
}

type bar struct {
	X, Y, W, H int
	Day        string
	Count      int
}

type userUse struct {
	User     string
	Last     time.Time
	Requests int
}

type usage struct {
	Bars     []bar
	Max      int
	Total    int
	From, To string
	Users    []userUse
}

type machinePage struct {
	base
	VM         jit.VMView
	CanManage  bool
	CanRequest bool
	Editor     policyForm
	// PolicyNotice is shown in the policy section, where saving leads.
	PolicyNotice string
	Grants       []grantRow
	Opened       []jit.Grant
	Usage        usage
	Request      requestForm
}

func (c *Console) machine(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	p, err := c.machinePage(r, a, r.PathValue("id"))
	if err != nil {
		return err
	}
	if id := r.URL.Query().Get("opened"); id != "" {
		for _, g := range p.Grants {
			if g.RequestID == id {
				p.Opened = append(p.Opened, g.Grant)
			}
		}
	}
	switch r.URL.Query().Get("done") {
	case "saved":
		p.PolicyNotice = "JIT policy saved."
	case "disabled":
		p.Notice = "JIT disabled: the ports are no longer locked."
	case "revoked":
		p.Notice = "Access revoked."
	}
	return c.render(w, r, http.StatusOK, "machine.html", p)
}

// machinePage gathers everything the machine page shows.
func (c *Console) machinePage(r *http.Request, a *control.Actor, id string) (machinePage, error) {
	ctx := r.Context()
	vm, err := c.ctl.GetVM(ctx, a, id)
	if err != nil {
		return machinePage{}, err
	}
	p := machinePage{base: c.base(a, vm.Name, "machines"), VM: vm,
		CanManage: a.Can(jit.PermManagePolicy, vm.Group), CanRequest: a.Can(jit.PermRequest, vm.Group) && vm.Policy != nil}
	if vm.Policy != nil {
		p.Editor = formFromRules(vm.Policy.Ports)
		p.Editor.RequireJustification, p.Editor.CloseConnections = vm.Policy.RequireJustification, vm.Policy.CloseConnectionsOnExpiry
	} else {
		p.Editor = formFromRules(vm.Recommended)
		p.Editor.Recommended = true
	}
	grants, _, err := c.ctl.ListGrants(ctx, a, control.GrantListFilter{VMID: id, Limit: control.MaxPage})
	if err != nil {
		return p, err
	}
	now := c.ctl.Now()
	for _, g := range grants {
		if g.Status == jit.GrantActive && g.EndTime.After(now) {
			own := g.User == a.Name() && a.Can(jit.PermRequest, g.Group)
			p.Grants = append(p.Grants, grantRow{Grant: g, CanRevoke: own || a.Can(jit.PermRevokeAny, g.Group)})
		}
	}
	sort.Slice(p.Grants, func(i, j int) bool { return p.Grants[i].EndTime.Before(p.Grants[j].EndTime) })
	p.Usage = usageOf(grants, now)
	if p.CanRequest {
		p.Request = c.newRequestForm(a, vm)
	}
	return p, nil
}

func formFromRules(rules []jit.PortRule) policyForm {
	var f policyForm
	for _, r := range rules {
		f.Rows = append(f.Rows, policyRow{Number: strconv.Itoa(r.Number), Protocol: r.Protocol, Sources: strings.Join(r.AllowedSourceAddressPrefixes, ", "), Max: r.MaxRequestAccessDuration})
	}
	return f
}

// Usage chart geometry, in SVG user units.
const (
	chartDays   = 30
	chartWidth  = 600
	chartHeight = 120
	barGap      = 4
)

// usageOf counts approved requests per UTC day over the last 30 days and
// lists the last users, from a VM's grants (newest first).
func usageOf(grants []jit.Grant, now time.Time) usage {
	var u usage
	today := now.UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -(chartDays - 1))
	perDay := make([]map[string]bool, chartDays)
	users := map[string]*userUse{}
	var order []string
	seenReq := map[string]bool{}
	for _, g := range grants {
		newReq := !seenReq[g.RequestID]
		seenReq[g.RequestID] = true
		if st := g.StartTime.UTC(); !st.Before(first) {
			if d := int(st.Sub(first) / (24 * time.Hour)); d < chartDays {
				if perDay[d] == nil {
					perDay[d] = map[string]bool{}
				}
				perDay[d][g.RequestID] = true
			}
		}
		uu, ok := users[g.User]
		if !ok {
			uu = &userUse{User: g.User, Last: g.StartTime}
			users[g.User] = uu
			order = append(order, g.User)
		}
		if newReq {
			uu.Requests++
		}
	}
	for _, m := range perDay {
		if len(m) > u.Max {
			u.Max = len(m)
		}
		u.Total += len(m)
	}
	scale := u.Max
	if scale < 1 {
		scale = 1
	}
	w := chartWidth / chartDays
	for i, m := range perDay {
		h := len(m) * (chartHeight - 10) / scale
		switch {
		case len(m) == 0:
			h = 1 // a faint tick, so that empty days still show
		case h < 2:
			h = 2
		}
		u.Bars = append(u.Bars, bar{X: i * w, Y: chartHeight - h, W: w - barGap, H: h, Day: first.AddDate(0, 0, i).Format("2006-01-02"), Count: len(m)})
	}
	u.From, u.To = first.Format("Jan 2"), today.Format("Jan 2")
	for i, name := range order {
		if i == 10 {
			break
		}
		u.Users = append(u.Users, *users[name])
	}
	return u
}

var removeAction = regexp.MustCompile(`^remove:(\d+)$`)

// savePolicy handles the policy editor: Save, and without JavaScript also
// Add and Remove, which re-show the editor with the rows as typed.
func (c *Console) savePolicy(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	id := r.PathValue("id")
	f := r.PostForm
	form := policyForm{RequireJustification: f.Get("requireJustification") != "", CloseConnections: f.Get("closeConnections") != ""}
	nums, protos, srcs, maxes := f["port"], f["protocol"], f["sources"], f["max"]
	// A policy has at most jit.MaxPolicyPorts rules; a form with more rows
	// is refused before any page is built from it.
	if n := max(len(nums), len(protos), len(srcs), len(maxes)); n > jit.MaxPolicyPorts {
		return jit.Invalid("ports", "a JIT policy may have at most %d ports; this form has %d rows", jit.MaxPolicyPorts, n)
	}
	for i := range nums {
		form.Rows = append(form.Rows, policyRow{Number: strings.TrimSpace(nums[i]), Protocol: at(protos, i), Sources: at(srcs, i), Max: at(maxes, i)})
	}
	action := f.Get("action")
	if m := removeAction.FindStringSubmatch(action); m != nil {
		if i, _ := strconv.Atoi(m[1]); i < len(form.Rows) {
			form.Rows = append(form.Rows[:i], form.Rows[i+1:]...)
		}
		return c.showEditor(w, r, a, id, form, http.StatusOK)
	}
	if action == "add" {
		if len(form.Rows) >= jit.MaxPolicyPorts {
			form.Error = fmt.Sprintf("A JIT policy may have at most %d ports.", jit.MaxPolicyPorts)
			return c.showEditor(w, r, a, id, form, http.StatusBadRequest)
		}
		form.Rows = append(form.Rows, newPolicyRow())
		return c.showEditor(w, r, a, id, form, http.StatusOK)
	}

	pol := jit.Policy{RequireJustification: form.RequireJustification, CloseConnectionsOnExpiry: form.CloseConnections}
	for i, row := range form.Rows {
		n, err := strconv.Atoi(row.Number)
		if err != nil {
			form.Rows[i].Invalid = true
			form.Error = fmt.Sprintf("Row %d: port %q is not a number.", i+1, row.Number)
			return c.showEditor(w, r, a, id, form, http.StatusBadRequest)
		}
		pol.Ports = append(pol.Ports, jit.PortRule{Number: n, Protocol: row.Protocol, AllowedSourceAddressPrefixes: splitSources(row.Sources), MaxRequestAccessDuration: row.Max})
	}
	if _, err := c.ctl.PutPolicy(r.Context(), a, id, pol); err != nil {
		if jit.ErrorCode(err) != jit.EInvalid {
			return err
		}
		form.Error = jit.ErrorMessage(err)
		if i, ok := rowOf(jit.ErrorTarget(err)); ok && i < len(form.Rows) {
			form.Rows[i].Invalid = true
			form.Error = fmt.Sprintf("Row %d: %s", i+1, form.Error)
		}
		return c.showEditor(w, r, a, id, form, http.StatusBadRequest)
	}
	http.Redirect(w, r, "/machines/"+url.PathEscape(id)+"?done=saved#policy", http.StatusSeeOther)
	return nil
}

func at(s []string, i int) string {
	if i < len(s) {
		return strings.TrimSpace(s[i])
	}
	return ""
}

var rowTarget = regexp.MustCompile(`^ports\[(\d+)\]`)

func rowOf(target string) (int, bool) {
	m := rowTarget.FindStringSubmatch(target)
	if m == nil {
		return 0, false
	}
	i, err := strconv.Atoi(m[1])
	return i, err == nil
}

// splitSources splits "10.0.0.0/8, 192.168.1.7" into prefixes; empty
// means any source.
func splitSources(s string) []string {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == ';' })
	if len(parts) == 0 {
		return []string{"*"}
	}
	return parts
}

// showEditor shows the machine page with the editor holding form, as the
// user typed it. Only policy managers get this far with a form.
func (c *Console) showEditor(w http.ResponseWriter, r *http.Request, a *control.Actor, id string, form policyForm, status int) error {
	p, err := c.machinePage(r, a, id)
	if err != nil {
		return err
	}
	if !p.CanManage {
		return jit.Errorf(jit.EForbidden, "%s may not change JIT policies in group %s", a.Name(), p.VM.Group)
	}
	form.Recommended = p.VM.Policy == nil && p.Editor.Recommended
	p.Editor = form
	return c.render(w, r, status, "machine.html", p)
}

type disablePage struct {
	base
	VM jit.VMView
}

func (c *Console) disablePage(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	vm, err := c.ctl.GetVM(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !a.Can(jit.PermManagePolicy, vm.Group) {
		return jit.Errorf(jit.EForbidden, "%s may not change JIT policies in group %s", a.Name(), vm.Group)
	}
	if vm.Policy == nil {
		return jit.Errorf(jit.EConflict, "JIT is not enabled on %s", vm.Name)
	}
	return c.render(w, r, http.StatusOK, "disable.html", disablePage{base: c.base(a, "Disable JIT on "+vm.Name, "machines"), VM: vm})
}

func (c *Console) disable(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	id := r.PathValue("id")
	if err := c.ctl.DeletePolicy(r.Context(), a, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/machines/"+url.PathEscape(id)+"?done=disabled", http.StatusSeeOther)
	return nil
}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	g, err := c.ctl.Revoke(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/machines/"+url.PathEscape(g.VMID)+"?done=revoked", http.StatusSeeOther)
	return nil
}

// maxOptions are the maximum request durations the editor offers.
var maxOptions = []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour,
	4 * time.Hour, 6 * time.Hour, 8 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// maxChoices lists the editor's duration options with cur selected (and
// added when it is not a standard one).
func maxChoices(cur string) []option {
	var out []option
	found := false
	for _, d := range maxOptions {
		v := jit.FormatISODuration(d)
		sel := v == cur
		found = found || sel
		out = append(out, option{Value: v, Label: fmtDuration(d), Selected: sel})
	}
	if !found && cur != "" {
		out = append(out, option{Value: cur, Label: fmtISO(cur), Selected: true})
	}
	return out
}

func protocolChoices(cur string) []option {
	out := []option{{Value: jit.ProtoAny, Label: "Any"}, {Value: jit.ProtoTCP, Label: "TCP"}, {Value: jit.ProtoUDP, Label: "UDP"}}
	for i := range out {
		out[i].Selected = strings.EqualFold(out[i].Value, cur) || (cur == "ANY" && out[i].Value == jit.ProtoAny)
	}
	return out
}
