package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
)

// PageSize is how many events one page of the activity log shows.
const PageSize = 50

// MaxVMOptions is how many machines the activity filter lists at most.
const MaxVMOptions = 500

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
	VMName  string
	Details string
}

type activityPage struct {
	base
	VM, Actor, Operation, Since, Until string
	VMs                                []option
	Operations                         []option
	VMField                            bool // a text field instead of the list of VMs
	Events                             []eventRow
	Newer, Older, Newest, CSV          string
	Verify                             *jit.Verification
	VerifyURL                          string
}

// activityFilter reads the filter form: machine, user, operation and a
// time range given as datetime-local values in UTC (or RFC 3339).
func activityFilter(r *http.Request) (control.EventListFilter, error) {
	q := r.URL.Query()
	f := control.EventListFilter{VMID: q.Get("vm"), Actor: strings.TrimSpace(q.Get("actor")), Operation: q.Get("operation")}
	var err error
	if f.Since, err = formTime(q.Get("since"), "since"); err != nil {
		return f, err
	}
	if f.Until, err = formTime(q.Get("until"), "until"); err != nil {
		return f, err
	}
	return f, nil
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
	f, err := activityFilter(r)
	if err != nil {
		return err
	}
	p := activityPage{base: c.base(a, "Activity log", "activity"), VM: f.VMID, Actor: f.Actor, Operation: f.Operation, Since: q.Get("since"), Until: q.Get("until")}
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

	// The machine filter is a list while the machines fit one; beyond
	// that, a field for the machine's id.
	vms, more, err := c.ctl.ListVMs(r.Context(), a, control.VMListFilter{Limit: MaxVMOptions})
	if err != nil {
		return err
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	ids := []string{f.VMID}
	for _, e := range events {
		ids = append(ids, e.VMID)
	}
	slices.Sort(ids)
	names, err := c.ctl.VMNames(r.Context(), a, slices.Compact(ids))
	if err != nil {
		return err
	}
	p.VMField = more != ""
	for _, v := range vms {
		if !p.VMField {
			p.VMs = append(p.VMs, option{Value: v.ID, Label: v.Name + " (" + v.Group + ")", Selected: v.ID == f.VMID})
		}
	}
	if !p.VMField && f.VMID != "" && !slices.ContainsFunc(vms, func(v jit.VMView) bool { return v.ID == f.VMID }) {
		p.VMs = append(p.VMs, option{Value: f.VMID, Label: f.VMID, Selected: true})
	}
	for _, op := range operations {
		p.Operations = append(p.Operations, option{Value: op, Label: op, Selected: op == f.Operation})
	}
	for _, e := range events {
		row := eventRow{Event: e, VMName: names[e.VMID], Details: string(e.Details)}
		if row.VMName == "" {
			row.VMName = e.VMID
		}
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
	f, err := activityFilter(r)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("ajar-activity-%s.csv", c.ctl.Now().Format("20060102-150405"))
	return httpio.StreamEvents(w, r, c.log, "csv", name, func(fn func(*jit.Event) error) error {
		return c.ctl.ExportEvents(r.Context(), a, f, fn)
	})
}
