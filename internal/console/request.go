package console

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

type requestPort struct {
	Value, Label, Max string
	MaxSeconds        int
	Checked           bool
	// Why the port is not ticked: the chosen source may not use it.
	Why string
}

// requestForm is the Request access form, in the dialog of the machine
// page and on its own page.
type requestForm struct {
	Ports                []requestPort
	MyIP                 string
	Source               string // my-ip or range
	Range                string
	CanAnySource         bool
	Durations            []option
	Justification        string
	RequireJustification bool
	Error                string
	// Key is the form's idempotency key: sending the form twice (a double
	// click, a retry) makes one request.
	Key string
}

// newRequestForm returns the form for vm with My IP as the source, the
// ports that address may use ticked (the others say why not) and the
// longest time every ticked port allows.
func (c *Console) newRequestForm(a *control.Actor, vm jit.VMView) requestForm {
	f := requestForm{Source: "my-ip", CanAnySource: a.Can(jit.PermRequestAnySource, vm.Group), Key: newKey()}
	if a.Address.IsValid() {
		f.MyIP = a.Address.String()
	}
	if vm.Policy == nil {
		return f
	}
	f.RequireJustification = vm.Policy.RequireJustification
	for _, r := range vm.Policy.Ports {
		p := requestPort{Value: portValue(r.Number, r.Protocol), Label: portLabel(r.Number, r.Protocol), Max: fmtISO(r.MaxRequestAccessDuration),
			MaxSeconds: int(r.MaxDuration() / time.Second), Checked: true}
		if a.Address.IsValid() && !r.Allows(netip.PrefixFrom(a.Address, a.Address.BitLen())) {
			p.Checked = false
			p.Why = "not from your address " + f.MyIP + " (allowed: " + strings.Join(r.AllowedSourceAddressPrefixes, ", ") + ")"
		}
		f.Ports = append(f.Ports, p)
	}
	f.fitDurations("")
	return f
}

// fitDurations lists the request times up to the longest port's maximum,
// offering those every ticked port allows (all ports' when none is
// ticked; the others are disabled, and the page's script enables them as
// ports are ticked), with sel selected, or else the longest offered.
func (f *requestForm) fitDurations(sel string) {
	var fit, longest time.Duration
	for _, p := range f.Ports {
		d := time.Duration(p.MaxSeconds) * time.Second
		longest = max(longest, d)
		if p.Checked && (fit == 0 || d < fit) {
			fit = d
		}
	}
	if fit == 0 {
		fit = longest
	}
	f.Durations = durationChoices(longest, "")
	for _, p := range f.Ports { // each port's own maximum is a choice too
		d := time.Duration(p.MaxSeconds) * time.Second
		v := jit.FormatISODuration(d)
		if !slices.ContainsFunc(f.Durations, func(o option) bool { return o.Value == v }) {
			f.Durations = append(f.Durations, option{Value: v, Label: fmtDuration(d), Seconds: int(d / time.Second)})
		}
	}
	slices.SortFunc(f.Durations, func(a, b option) int { return a.Seconds - b.Seconds })
	best := -1
	for i := range f.Durations {
		o := &f.Durations[i]
		o.Disabled = time.Duration(o.Seconds)*time.Second > fit
		if !o.Disabled && o.Value == sel {
			best = i
		}
	}
	if best < 0 {
		for i, o := range f.Durations {
			if !o.Disabled {
				best = i
			}
		}
	}
	if best >= 0 {
		f.Durations[best].Selected = true
	}
}

// fill sets the form to the values sent (by its POST, or in the query
// of the page the sign-in returns to).
func (f *requestForm) fill(v url.Values) {
	f.Source, f.Range, f.Justification = v.Get("source"), strings.TrimSpace(v.Get("range")), v.Get("justification")
	if f.Source != "range" {
		f.Source = "my-ip"
	}
	picked := map[string]bool{}
	for _, p := range v["port"] {
		picked[p] = true
	}
	for i := range f.Ports {
		f.Ports[i].Checked = picked[f.Ports[i].Value]
	}
	f.fitDurations(v.Get("duration"))
}

// values is the form as a query: what a sign-in returns to.
func (f *requestForm) values(duration string) url.Values {
	v := url.Values{"source": {f.Source}, "duration": {duration}}
	if f.Range != "" {
		v.Set("range", f.Range)
	}
	if f.Justification != "" {
		v.Set("justification", f.Justification)
	}
	for _, p := range f.Ports {
		if p.Checked {
			v.Add("port", p.Value)
		}
	}
	return v
}

func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func portValue(n int, proto string) string { return strconv.Itoa(n) + "/" + proto }

func portLabel(n int, proto string) string {
	if proto == jit.ProtoAny {
		return strconv.Itoa(n) + " (any protocol)"
	}
	return strconv.Itoa(n) + " (" + proto + ")"
}

// durationChoices lists request times up to max, with sel selected.
func durationChoices(max time.Duration, sel string) []option {
	var out []option
	for _, d := range maxOptions {
		if d > max {
			break
		}
		v := jit.FormatISODuration(d)
		out = append(out, option{Value: v, Label: fmtDuration(d), Selected: v == sel, Seconds: int(d / time.Second)})
	}
	if len(out) == 0 || out[len(out)-1].Value != jit.FormatISODuration(max) {
		v := jit.FormatISODuration(max)
		out = append(out, option{Value: v, Label: fmtDuration(max), Selected: v == sel, Seconds: int(max / time.Second)})
	}
	return out
}

type requestPage struct {
	base
	VM      jit.VMView
	Request requestForm
}

func (c *Console) requestPage(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	vm, err := c.requestableVM(r, a)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	form := c.newRequestForm(a, vm)
	if d, ok := c.drafts.get(a.Name(), q.Get("draft"), c.ctl.Now()); ok {
		if df, ok := d.(requestForm); ok {
			form = df
			form.Key = newKey()
		}
	} else if q.Has("source") {
		form.fill(q) // back from a sign-in: the form as it was sent
	}
	p := requestPage{base: c.base(a, "Request access to "+vm.Name, "machines"), VM: vm, Request: form}
	return c.render(w, r, http.StatusOK, "request.html", p)
}

// requestResume is where a sign-in returns to when the session ended
// while the Request access form was sent: the form's page, filled in.
func requestResume(r *http.Request) string {
	id := r.PathValue("id")
	if parseForm(nil, r, MaxSignInForm) != nil {
		return "/machines/" + url.PathEscape(id)
	}
	var f requestForm
	f.fill(r.PostForm)
	for _, p := range r.PostForm["port"] {
		f.Ports = append(f.Ports, requestPort{Value: p, Checked: true})
	}
	return "/machines/" + url.PathEscape(id) + "/request?" + f.values(r.PostForm.Get("duration")).Encode()
}

// requestableVM is the page's VM (its path's id), when a may request
// access to it.
func (c *Console) requestableVM(r *http.Request, a *control.Actor) (jit.VMView, error) {
	return c.requestableVMByID(r, a, r.PathValue("id"))
}

// request submits the Request access form. On success it goes back to the
// machine page, which shows what opened; on refusal to the form's page,
// which shows the form as sent with the server's message.
func (c *Console) request(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	vm, err := c.requestableVM(r, a)
	if err != nil {
		return err
	}
	f := r.PostForm
	form := c.newRequestForm(a, vm)
	form.fill(f)
	duration := f.Get("duration")
	vr := jit.VMRequest{ID: vm.ID}
	for _, p := range form.Ports {
		if !p.Checked {
			continue
		}
		num, proto, _ := strings.Cut(p.Value, "/")
		n, _ := strconv.Atoi(num)
		pr := jit.PortRequest{Number: n, Protocol: proto, Duration: duration, AllowedSourceAddressPrefix: "my-ip"}
		if form.Source == "range" {
			pr.AllowedSourceAddressPrefix = form.Range
		}
		vr.Ports = append(vr.Ports, pr)
	}
	switch {
	case form.Source == "range" && form.Range == "":
		form.Error = "Enter an address or range, or choose My IP."
	case form.Source != "range" && form.Range != "":
		form.Error = fmt.Sprintf("You typed %q as the address but chose My IP: choose which one to open for.", form.Range)
	case len(vr.Ports) == 0:
		form.Error = "Choose at least one port."
	}
	if form.Error == "" {
		ar := jit.AccessRequest{VirtualMachines: []jit.VMRequest{vr}, Justification: form.Justification}
		if k := f.Get("key"); k != "" {
			ar.IdempotencyKey = "console-" + k
		}
		req, err := c.ctl.RequestAccess(r.Context(), a, ar)
		if err == nil && req.Status == jit.RequestPending {
			http.Redirect(w, r, "/requests?done=pending", http.StatusSeeOther)
			return nil
		}
		if err == nil {
			http.Redirect(w, r, fmt.Sprintf("/machines/%s?opened=%s", url.PathEscape(vm.ID), url.QueryEscape(req.ID)), http.StatusSeeOther)
			return nil
		}
		switch jit.ErrorCode(err) {
		case jit.EInvalid, jit.EForbidden, jit.EConflict:
			form.Error = jit.ErrorMessage(err)
		default:
			return err
		}
	}
	id := c.drafts.put(a.Name(), form, c.ctl.Now())
	http.Redirect(w, r, "/machines/"+url.PathEscape(vm.ID)+"/request?draft="+id, http.StatusSeeOther)
	return nil
}
