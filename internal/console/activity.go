package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// PageSize is how many events one page of the activity log shows.
const PageSize = 50

// MaxVMChoices is how many machines the activity filter offers when the
// machine typed names several, or none exactly.
const MaxVMChoices = 20

// operations are the activity log's operations, for the filter.
var operations = []string{
	jit.OpRequestApprove, jit.OpRequestRefuse, jit.OpGrantOpen, jit.OpGrantExpire, jit.OpGrantRevoke, jit.OpGrantSupersede, jit.OpGrantShorten,
	jit.OpPolicyCreate, jit.OpPolicyUpdate, jit.OpPolicyDelete, jit.OpVMCreate, jit.OpVMDelete, jit.OpGroupCreate,
	jit.OpEnforceApply, jit.OpEnforceFail, jit.OpAgentEnroll, jit.OpAgentConnect, jit.OpAgentDisconnect,
	jit.OpDriftDetect, jit.OpDriftRepair, jit.OpSignIn, jit.OpUserCreate, jit.OpUserDelete, jit.OpUserSetPassword, jit.OpUserSetupLink,
	jit.OpTokenCreate, jit.OpTokenRevoke, jit.OpRoleBindingCreate, jit.OpRoleBindingDelete,
	jit.OpClaimMappingCreate, jit.OpClaimMappingDelete, jit.OpWebhookCreate, jit.OpWebhookDelete,
}

type eventRow struct {
	jit.Event
	VMName   string
	Sentence string
	Details  string // indented JSON
}

type activityPage struct {
	base
	VM, Actor, Operation, Since, Until string
	Operations                         []option
	// VMChoices are the machines the machine typed may mean, when it
	// names none exactly or several.
	VMChoices                 []option
	Events                    []eventRow
	Newer, Older, Newest, CSV string
	Verify                    *jit.Verification
	VerifyURL                 string
}

// activityFilter reads the filter form: machine (its name, group/name or
// id), user (a name or its start), operation and a time range given as
// datetime-local values in UTC (or RFC 3339). A machine that names no
// machine exactly, or several, comes back as choices (with nothing
// selected, the filter matches no machine).
func (c *Console) activityFilter(r *http.Request, a *control.Actor) (control.EventListFilter, []option, error) {
	q := r.URL.Query()
	f := control.EventListFilter{ActorPrefix: strings.TrimSpace(q.Get("actor")), Operation: q.Get("operation")}
	var err error
	if f.Since, err = formTime(q.Get("since"), "since"); err != nil {
		return f, nil, err
	}
	if f.Until, err = formTime(q.Get("until"), "until"); err != nil {
		return f, nil, err
	}
	var choices []option
	f.VMID, choices, err = c.findVM(r, a, strings.TrimSpace(q.Get("vm")))
	return f, choices, err
}

// findVM finds the machine a filter names: by id, by name (group/name
// when names repeat), else among the machines whose name, address or
// labels contain it. One match is its id; otherwise the matches are
// choices, and the id is one no machine has.
func (c *Console) findVM(r *http.Request, a *control.Actor, s string) (string, []option, error) {
	if s == "" {
		return "", nil, nil
	}
	ctx := r.Context()
	if vm, err := c.ctl.GetVM(ctx, a, s); err == nil {
		return vm.ID, nil, nil
	} else if code := jit.ErrorCode(err); code != jit.ENotFound && code != jit.EInvalid {
		return "", nil, err
	}
	lf := control.VMListFilter{Name: s, Limit: MaxVMChoices}
	if g, n, ok := strings.Cut(s, "/"); ok {
		lf.Group, lf.Name = g, n
	}
	vms, _, err := c.ctl.ListVMs(ctx, a, lf)
	if err != nil {
		return "", nil, err
	}
	if len(vms) == 1 {
		return vms[0].ID, nil, nil
	}
	if len(vms) == 0 {
		if vms, _, err = c.ctl.ListVMs(ctx, a, control.VMListFilter{Search: s, Limit: MaxVMChoices}); err != nil {
			return "", nil, err
		}
		if len(vms) == 1 {
			return vms[0].ID, nil, nil
		}
	}
	var out []option
	for _, v := range vms {
		out = append(out, option{Value: v.ID, Label: v.Group + "/" + v.Name})
	}
	return "\x00none", out, nil
}

func formTime(s, field string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, jit.Invalid(field, "%q is not a time such as 2026-01-02T15:04 (UTC)", s)
}

func (c *Console) activity(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	q := r.URL.Query()
	f, choices, err := c.activityFilter(r, a)
	if err != nil {
		return err
	}
	p := activityPage{base: c.base(a, "Activity log", "activity"), VM: strings.TrimSpace(q.Get("vm")), Actor: f.ActorPrefix, Operation: f.Operation,
		Since: q.Get("since"), Until: q.Get("until"), VMChoices: choices}
	if f.VMID == "\x00none" {
		if len(choices) == 0 {
			p.Problem = fmt.Sprintf("No machine matches %q.", p.VM)
		}
		f.VMID = "-" // an id no machine has: no events
	}
	before, err := strconv.ParseInt(q.Get("before"), 10, 64)
	if q.Get("before") != "" && (err != nil || before < 1) {
		return jit.Invalid("before", "before must be an event number")
	}
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if q.Get("after") != "" && (err != nil || after < 0) {
		return jit.Invalid("after", "after must be an event number")
	}
	// One more than a page tells whether there is another.
	f.Limit = PageSize + 1
	var events []jit.Event
	if after > 0 {
		f.AfterSeq = after
		events, _, err = c.ctl.ListEvents(r.Context(), a, f)
		slices.Reverse(events)
		if len(events) > PageSize {
			events = events[len(events)-PageSize:]
			p.Newer = "more"
		}
	} else {
		f.Desc, f.AfterSeq = true, before
		events, _, err = c.ctl.ListEvents(r.Context(), a, f)
		if len(events) > PageSize {
			events = events[:PageSize]
			p.Older = "more"
		}
	}
	if err != nil {
		return err
	}

	ids := []string{}
	for _, e := range events {
		ids = append(ids, e.VMID)
		if id, ok := strings.CutPrefix(e.Actor, "agent:"); ok {
			ids = append(ids, id) // named as its machine's agent
		}
	}
	slices.Sort(ids)
	names, err := c.ctl.VMNames(r.Context(), a, slices.Compact(ids))
	if err != nil {
		return err
	}
	for i := range p.VMChoices {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Del("before")
		v.Del("after")
		v.Set("vm", p.VMChoices[i].Value)
		p.VMChoices[i].Value = "/activity?" + v.Encode()
	}
	for _, op := range operations {
		p.Operations = append(p.Operations, option{Value: op, Label: op, Selected: op == f.Operation})
	}
	for _, e := range events {
		row := eventRow{Event: e, VMName: names[e.VMID], Details: string(e.Details)}
		if row.VMName == "" {
			row.VMName = e.VMID
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, e.Details, "", "  ") == nil {
			row.Details = pretty.String()
		}
		vmName := row.VMName
		if vmName == "" {
			if g := e.Group; g != "" {
				vmName = "group " + g
			}
		}
		row.Sentence = sentence(e, vmName, names)
		row.Actor = actorName(e.Actor, names)
		p.Events = append(p.Events, row)
	}

	filter := url.Values{}
	for _, k := range []string{"vm", "actor", "operation", "since", "until"} {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			filter.Set(k, v)
		}
	}
	link := func(k string, seq int64) string {
		v := url.Values{}
		for key, vals := range filter {
			v[key] = vals
		}
		if k != "" {
			v.Set(k, strconv.FormatInt(seq, 10))
		}
		if len(v) == 0 {
			return "/activity"
		}
		return "/activity?" + v.Encode()
	}
	if len(p.Events) > 0 {
		if p.Older != "" || after > 0 {
			p.Older = link("before", p.Events[len(p.Events)-1].Seq)
		}
		if p.Newer != "" || before > 0 {
			p.Newer = link("after", p.Events[0].Seq)
		}
	}
	if before > 0 || after > 0 {
		p.Newest = link("", 0)
	}
	p.CSV = "/activity.csv"
	if len(filter) > 0 {
		p.CSV += "?" + filter.Encode()
	}
	v := url.Values{}
	for key, vals := range filter {
		v[key] = vals
	}
	v.Set("verify", "1")
	p.VerifyURL = "/activity?" + v.Encode()
	if q.Get("verify") != "" {
		res, err := c.ctl.Verify(r.Context(), a)
		if err != nil {
			return err
		}
		p.Verify = &res
	}
	return c.render(w, r, http.StatusOK, "activity.html", p)
}

// activityCSV downloads every event of the filtered activity log,
// streamed, in the API's CSV format.
func (c *Console) activityCSV(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	f, choices, err := c.activityFilter(r, a)
	if err != nil {
		return err
	}
	if f.VMID == "\x00none" {
		return jit.Invalid("vm", "%q names %d machines: choose one on the activity page", r.URL.Query().Get("vm"), len(choices))
	}
	name := fmt.Sprintf("ajar-activity-%s.csv", c.ctl.Now().Format("20060102-150405"))
	return httpio.StreamEvents(w, r, c.log, "csv", name, func(fn func(*jit.Event) error) error {
		return c.ctl.ExportEvents(r.Context(), a, f, fn)
	})
}
