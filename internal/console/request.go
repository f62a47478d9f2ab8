package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

type requestPort struct {
	Value, Label, Max string
	Checked           bool
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
}

// newRequestForm returns the form for vm with every port ticked, My IP as
// the source and the longest time every port allows.
func (c *Console) newRequestForm(a *control.Actor, vm jit.VMView) requestForm {
	f := requestForm{Source: "my-ip", CanAnySource: a.Can(jit.PermRequestAnySource, vm.Group)}
	if a.Address.IsValid() {
		f.MyIP = a.Address.String()
	}
	if vm.Policy == nil {
		return f
	}
	f.RequireJustification = vm.Policy.RequireJustification
	var longest, shortest time.Duration
	for i, r := range vm.Policy.Ports {
		f.Ports = append(f.Ports, requestPort{Value: portValue(r.Number, r.Protocol), Label: portLabel(r.Number, r.Protocol), Max: fmtISO(r.MaxRequestAccessDuration), Checked: true})
		d := r.MaxDuration()
		if d > longest {
			longest = d
		}
		if i == 0 || d < shortest {
			shortest = d
		}
	}
	f.Durations = durationChoices(longest, jit.FormatISODuration(shortest))
	return f
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
		out = append(out, option{Value: v, Label: fmtDuration(d), Selected: v == sel})
	}
	if len(out) == 0 || out[len(out)-1].Value != jit.FormatISODuration(max) {
		v := jit.FormatISODuration(max)
		out = append(out, option{Value: v, Label: fmtDuration(max), Selected: v == sel})
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
	p := requestPage{base: c.base(a, "Request access to "+vm.Name, "machines"), VM: vm, Request: c.newRequestForm(a, vm)}
	return c.render(w, r, http.StatusOK, "request.html", p)
}

func (c *Console) requestableVM(r *http.Request, a *control.Actor) (jit.VMView, error) {
	vm, err := c.ctl.GetVM(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return vm, err
	}
	if !a.Can(jit.PermRequest, vm.Group) {
		return vm, jit.Errorf(jit.EForbidden, "%s may not request access to VMs in group %s", a.Name(), vm.Group)
	}
	if vm.Policy == nil {
		return vm, jit.Errorf(jit.EConflict, "JIT is not enabled on %s: there is nothing to request", vm.Name)
	}
	return vm, nil
}

// request submits the Request access form. On success it goes back to the
// machine page, which shows what opened; on refusal it shows the form
// again with the server's message.
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
	form.Source, form.Range, form.Justification = f.Get("source"), strings.TrimSpace(f.Get("range")), f.Get("justification")
	duration := f.Get("duration")
	for i, o := range form.Durations {
		form.Durations[i].Selected = o.Value == duration
	}
	picked := map[string]bool{}
	for _, v := range f["port"] {
		picked[v] = true
	}
	vr := jit.VMRequest{ID: vm.ID}
	for i := range form.Ports {
		form.Ports[i].Checked = picked[form.Ports[i].Value]
		if !form.Ports[i].Checked {
			continue
		}
		num, proto, _ := strings.Cut(form.Ports[i].Value, "/")
		n, _ := strconv.Atoi(num)
		pr := jit.PortRequest{Number: n, Protocol: proto, Duration: duration, AllowedSourceAddressPrefix: "my-ip"}
		if form.Source == "range" {
			pr.AllowedSourceAddressPrefix = form.Range
		}
		vr.Ports = append(vr.Ports, pr)
	}
	if form.Source == "range" && form.Range == "" {
		form.Error = "Enter an address or range, or choose My IP."
	} else if len(vr.Ports) == 0 {
		form.Error = "Choose at least one port."
	}
	if form.Error == "" {
		req, err := c.ctl.RequestAccess(r.Context(), a, jit.AccessRequest{VirtualMachines: []jit.VMRequest{vr}, Justification: form.Justification})
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
	p := requestPage{base: c.base(a, "Request access to "+vm.Name, "machines"), VM: vm, Request: form}
	return c.render(w, r, http.StatusBadRequest, "request.html", p)
}
