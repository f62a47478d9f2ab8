package console

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	Disabled     bool
	Seconds      int // of a duration choice
}

// policyRow is one row of the policy editor, as typed, and what is
// wrong with each of its fields.
type policyRow struct {
	Number, Protocol, Sources, Max             string
	NumberErr, ProtocolErr, SourcesErr, MaxErr string
}

// Invalid reports whether a field of the row is at fault.
func (r policyRow) Invalid() bool {
	return r.NumberErr != "" || r.ProtocolErr != "" || r.SourcesErr != "" || r.MaxErr != ""
}

type policyForm struct {
	Rows                 []policyRow
	RequireJustification bool
	CloseConnections     bool
	Recommended          bool // prefilled from the recommendation
	Error                string
	// Checked is set after a check (Enter in a field) found no problem.
	Checked bool
}

// fieldError is one entry of the editor's error summary: a link to the
// field at fault.
type fieldError struct{ ID, Text string }

// Errors lists the fields at fault, in the order of the form.
func (f policyForm) Errors() []fieldError {
	var out []fieldError
	for i, r := range f.Rows {
		for _, e := range []struct{ id, name, msg string }{{"port", "port", r.NumberErr}, {"protocol", "protocol", r.ProtocolErr}, {"sources", "allowed sources", r.SourcesErr}, {"max", "maximum time", r.MaxErr}} {
			if e.msg != "" {
				out = append(out, fieldError{ID: fmt.Sprintf("%s-%d", e.id, i), Text: fmt.Sprintf("Row %d, %s: %s", i+1, e.name, e.msg)})
			}
		}
	}
	return out
}

// check validates every row, noting each field's error next to it, and
// returns the policy the rows make and whether all of them are valid.
func (f *policyForm) check() (jit.Policy, bool) {
	pol := jit.Policy{RequireJustification: f.RequireJustification, CloseConnectionsOnExpiry: f.CloseConnections}
	ok := true
	for i := range f.Rows {
		row := &f.Rows[i]
		row.NumberErr, row.ProtocolErr, row.SourcesErr, row.MaxErr = "", "", "", ""
		n, err := strconv.Atoi(row.Number)
		switch {
		case err != nil:
			row.NumberErr = fmt.Sprintf("%q is not a port number.", row.Number)
		case n < 1 || n > 65535:
			row.NumberErr = fmt.Sprintf("port number must be between 1 and 65535, got %d", n)
		}
		if _, err := jit.NormalizeProtocol(row.Protocol); err != nil {
			row.ProtocolErr = err.Error()
		}
		// Each field alone, so that every field at fault is named.
		sources := splitSources(row.Sources)
		if err := jit.ValidatePolicy(&jit.Policy{Ports: []jit.PortRule{{Number: 1, Protocol: jit.ProtoAny, AllowedSourceAddressPrefixes: slices.Clone(sources)}}}); err != nil {
			row.SourcesErr = jit.ErrorMessage(err)
		}
		if err := jit.ValidatePolicy(&jit.Policy{Ports: []jit.PortRule{{Number: 1, Protocol: jit.ProtoAny, MaxRequestAccessDuration: row.Max}}}); err != nil {
			row.MaxErr = jit.ErrorMessage(err)
		}
		rule := jit.PortRule{Number: n, Protocol: row.Protocol, AllowedSourceAddressPrefixes: sources, MaxRequestAccessDuration: row.Max}
		ok = ok && !row.Invalid()
		pol.Ports = append(pol.Ports, rule)
	}
	if len(f.Rows) == 0 {
		f.Error = "A JIT policy needs at least one port: add one."
		return pol, false
	}
	if ok {
		// Rows valid one by one may still overlap.
		full := pol
		full.Ports = slices.Clone(pol.Ports)
		if err := jit.ValidatePolicy(&full); err != nil {
			if i, found := rowOf(jit.ErrorTarget(err)); found && i < len(f.Rows) {
				f.Rows[i].NumberErr = jit.ErrorMessage(err)
			} else {
				f.Error = jit.ErrorMessage(err)
			}
			return pol, false
		}
	}
	return pol, ok
}

// setError puts a validation error on the field its target names
// ("ports[0].protocol").
func (r *policyRow) setError(target, msg string) {
	switch {
	case strings.HasSuffix(target, ".protocol"):
		r.ProtocolErr = msg
	case strings.Contains(target, ".allowedSourceAddressPrefixes"):
		r.SourcesErr = msg
	case strings.HasSuffix(target, ".maxRequestAccessDuration"):
		r.MaxErr = msg
	default:
		r.NumberErr = msg
	}
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
	Back      string // where Revoke returns: "" (the machine page) or "access"
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
	State      machineState
	CanManage  bool
	CanRequest bool
	Editor     policyForm
	// PolicyNotice is shown in the policy section, where saving leads.
	PolicyNotice string
	Grants       []grantRow
	Recent       []jit.Grant // ended grants, newest first
	Opened       []jit.Grant
	Usage        usage
	Request      requestForm
}

func (c *Console) machine(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	p, err := c.machinePage(r, a, r.PathValue("id"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if id := q.Get("opened"); id != "" {
		for _, g := range p.Grants {
			if g.RequestID == id {
				p.Opened = append(p.Opened, g.Grant)
			}
		}
	}
	if d, ok := c.drafts.get(a.Name(), q.Get("draft"), c.ctl.Now()); ok && p.CanManage {
		if f, ok := d.(policyForm); ok {
			p.Editor = f
		}
	}
	switch q.Get("done") {
	case "saved":
		p.PolicyNotice = "JIT policy saved."
	case "disabled":
		p.Notice = "JIT disabled: the ports are no longer locked."
	case "revoked":
		p.Notice = "Access revoked."
		if g, ok := p.grant(q.Get("grant")); ok {
			p.Notice = revokedNotice(g)
		}
	}
	return c.render(w, r, http.StatusOK, "machine.html", p)
}

// revokedNotice says what a revoke left: the grant's state, also when it
// had already ended (a second click, or its time ran out).
func revokedNotice(g jit.Grant) string {
	what := fmt.Sprintf("Port %d (%s) for %s from %s on %s", g.Port, protoName(g.Protocol), g.User, g.Source, g.VMName)
	if g.Status == jit.GrantRevoked {
		return "Access revoked. " + what + ": " + jit.EndedState(g) + "."
	}
	return what + " had already ended: " + jit.EndedState(g) + "."
}

func protoName(p string) string {
	if p == jit.ProtoAny {
		return "any protocol"
	}
	return p
}

// grant finds a grant of the page, live or recent.
func (p machinePage) grant(id string) (jit.Grant, bool) {
	for _, g := range p.Grants {
		if g.ID == id {
			return g.Grant, true
		}
	}
	for _, g := range p.Recent {
		if g.ID == id {
			return g, true
		}
	}
	return jit.Grant{}, false
}

// RecentGrants is how many ended grants the machine page lists.
const RecentGrants = 10

// machinePage gathers everything the machine page shows.
func (c *Console) machinePage(r *http.Request, a *control.Actor, id string) (machinePage, error) {
	ctx := r.Context()
	vm, err := c.ctl.GetVM(ctx, a, id)
	if err != nil {
		return machinePage{}, err
	}
	p := machinePage{base: c.base(a, vm.Name, "machines"), VM: vm, State: stateOf(vm),
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
		} else if len(p.Recent) < RecentGrants {
			if g.Status == jit.GrantActive {
				g.Status = jit.GrantExpired // ended by time; the expirer writes it soon
			}
			p.Recent = append(p.Recent, g)
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

// savePolicy handles the policy editor: Save, Check (what Enter in a
// field does: it reports every field's problem and saves nothing), and
// without JavaScript also Add and Remove. Each ends in a redirect: to the
// machine page when saved, else to the page showing the editor as typed.
func (c *Console) savePolicy(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	id := r.PathValue("id")
	vm, err := c.ctl.GetVM(r.Context(), a, id)
	if err != nil {
		return err
	}
	if !a.Can(jit.PermManagePolicy, vm.Group) {
		return jit.Errorf(jit.EForbidden, "%s may not change JIT policies in group %s", a.Name(), vm.Group)
	}
	f := r.PostForm
	form := policyForm{RequireJustification: f.Get("requireJustification") != "", CloseConnections: f.Get("closeConnections") != "", Recommended: vm.Policy == nil}
	nums, protos, srcs, maxes := f["port"], f["protocol"], f["sources"], f["max"]
	// A policy has at most jit.MaxPolicyPorts rules; a form with more rows
	// is refused before any page is built from it.
	if n := max(len(nums), len(protos), len(srcs), len(maxes)); n > jit.MaxPolicyPorts {
		return jit.Invalid("ports", "a JIT policy may have at most %d ports; this form has %d rows", jit.MaxPolicyPorts, n)
	}
	for i := range nums {
		form.Rows = append(form.Rows, policyRow{Number: strings.TrimSpace(nums[i]), Protocol: at(protos, i), Sources: at(srcs, i), Max: at(maxes, i)})
	}
	show := func() error {
		d := c.drafts.put(a.Name(), form, c.ctl.Now())
		http.Redirect(w, r, "/machines/"+url.PathEscape(id)+"?draft="+d+"#policy", http.StatusSeeOther)
		return nil
	}
	action := f.Get("action")
	if m := removeAction.FindStringSubmatch(action); m != nil {
		if i, _ := strconv.Atoi(m[1]); i < len(form.Rows) {
			form.Rows = append(form.Rows[:i], form.Rows[i+1:]...)
		}
		return show()
	}
	switch action {
	case "add":
		if len(form.Rows) >= jit.MaxPolicyPorts {
			form.Error = fmt.Sprintf("A JIT policy may have at most %d ports.", jit.MaxPolicyPorts)
		} else {
			form.Rows = append(form.Rows, newPolicyRow())
		}
		return show()
	case "check":
		_, form.Checked = form.check()
		return show()
	case "save":
	default:
		return jit.Invalid("action", "unknown action %q", action)
	}
	pol, ok := form.check()
	if !ok {
		return show()
	}
	if _, err := c.ctl.PutPolicy(r.Context(), a, id, pol); err != nil {
		if jit.ErrorCode(err) != jit.EInvalid {
			return err
		}
		if i, found := rowOf(jit.ErrorTarget(err)); found && i < len(form.Rows) {
			form.Rows[i].setError(jit.ErrorTarget(err), jit.ErrorMessage(err))
		} else {
			form.Error = jit.ErrorMessage(err)
		}
		return show()
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

// revoke ends a grant and goes back to the page the form was on (the
// machine's, or My access), which says the grant's state: revoking a grant
// that has already ended is no failure.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	g, err := c.ctl.Revoke(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	q := "done=revoked&grant=" + url.QueryEscape(g.ID)
	if r.PostForm.Get("back") == "access" {
		http.Redirect(w, r, "/access?"+q, http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, "/machines/"+url.PathEscape(g.VMID)+"?"+q, http.StatusSeeOther)
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
