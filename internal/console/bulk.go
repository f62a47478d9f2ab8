package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

// Multi-select on the machine tabs: enable JIT with the recommended ports
// on many machines at once, and request access to several machines in
// one request.

// MaxBulk is the most machines one multi-select acts on (the most one
// access request may name).
const MaxBulk = jit.MaxRequestVMs

func selectedVMs(v url.Values) ([]string, error) {
	ids := v["vm"]
	if len(ids) == 0 {
		return nil, jit.Invalid("vm", "choose at least one machine")
	}
	if len(ids) > MaxBulk {
		return nil, jit.Invalid("vm", "choose at most %d machines at once, got %d", MaxBulk, len(ids))
	}
	return ids, nil
}

// enableSelected enables JIT with its recommended ports on each machine
// chosen; each succeeds or fails on its own, and the page says which.
func (c *Console) enableSelected(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	ids, err := selectedVMs(r.PostForm)
	if err != nil {
		return err
	}
	var done []string
	var failed []string
	for _, id := range ids {
		vm, err := c.ctl.GetVM(r.Context(), a, id)
		if err == nil && vm.Policy != nil {
			continue // already enabled: nothing to do
		}
		if err == nil {
			if vm.Classification.JIT == jit.JITUnsupported {
				err = jit.Errorf(jit.EConflict, "ajar cannot enforce there: %s", vm.Classification.Reason)
			} else {
				_, err = c.ctl.PutPolicy(r.Context(), a, id, jit.Policy{Ports: vm.Recommended})
			}
		}
		switch jit.ErrorCode(err) {
		case "":
			done = append(done, vm.Name)
		case jit.EInvalid, jit.EForbidden, jit.EConflict, jit.ENotFound:
			name := vm.Name
			if name == "" {
				name = id
			}
			failed = append(failed, name+": "+jit.ErrorMessage(err))
		default:
			return err
		}
	}
	msg := fmt.Sprintf("JIT enabled with the recommended ports on %s.", plural(len(done), "machine"))
	if len(done) > 0 {
		msg = fmt.Sprintf("JIT enabled with the recommended ports on %s: %s.", plural(len(done), "machine"), strings.Join(done, ", "))
	}
	if len(failed) > 0 {
		msg += " Not enabled on " + strings.Join(failed, "; ") + "."
	}
	id := c.drafts.put(a.Name(), adminDraft{Error: msg}, c.ctl.Now())
	http.Redirect(w, r, "/machines?tab=configured&result="+id, http.StatusSeeOther)
	return nil
}

// multiVM is one machine of a request for several.
type multiVM struct {
	VM    jit.VMView
	Ports []requestPort
}

type multiPage struct {
	base
	VMs     []multiVM
	Request requestForm // source, time, justification and key; its Ports are every machine's
}

// multiForm builds the form for the machines ids, the ports each one's
// address may use ticked.
func (c *Console) multiForm(r *http.Request, a *control.Actor, ids []string) (multiPage, error) {
	p := multiPage{base: c.base(a, "Request access to several machines", "machines")}
	p.Request = requestForm{Source: "my-ip", Key: newKey(), CanAnySource: true}
	if a.Address.IsValid() {
		p.Request.MyIP = a.Address.String()
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		vm, err := c.requestableVMByID(r, a, id)
		if err != nil {
			return p, err
		}
		one := c.newRequestForm(a, vm)
		for i := range one.Ports {
			one.Ports[i].Value = vm.ID + "|" + one.Ports[i].Value
		}
		p.VMs = append(p.VMs, multiVM{VM: vm, Ports: one.Ports})
		p.Request.Ports = append(p.Request.Ports, one.Ports...)
		p.Request.CanAnySource = p.Request.CanAnySource && one.CanAnySource
		p.Request.RequireJustification = p.Request.RequireJustification || one.RequireJustification
	}
	p.Request.fitDurations("")
	return p, nil
}

// requestableVMByID is VM id, when a may request access to it (its
// group allows a and it has a JIT policy).
func (c *Console) requestableVMByID(r *http.Request, a *control.Actor, id string) (jit.VMView, error) {
	vm, err := c.ctl.GetVM(r.Context(), a, id)
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

func (c *Console) multiRequestPage(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	q := r.URL.Query()
	if d, ok := c.drafts.get(a.Name(), q.Get("draft"), c.ctl.Now()); ok {
		if p, ok := d.(multiPage); ok {
			p.base = c.base(a, "Request access to several machines", "machines")
			p.Request.Key = newKey()
			return c.render(w, r, http.StatusOK, "multirequest.html", p)
		}
	}
	ids, err := selectedVMs(q)
	if err != nil {
		return err
	}
	p, err := c.multiForm(r, a, ids)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "multirequest.html", p)
}

// multiRequest makes one access request for the machines and ports
// ticked: all of it opens, or none.
func (c *Console) multiRequest(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	if err := parseForm(w, r, MaxForm); err != nil {
		return err
	}
	f := r.PostForm
	ids, err := selectedVMs(f)
	if err != nil {
		return err
	}
	p, err := c.multiForm(r, a, ids)
	if err != nil {
		return err
	}
	form := &p.Request
	form.fill(f)
	for i := range p.VMs {
		for j := range p.VMs[i].Ports {
			p.VMs[i].Ports[j].Checked = form.Ports[indexOfPort(form.Ports, p.VMs[i].Ports[j].Value)].Checked
		}
	}
	duration := f.Get("duration")
	ar := jit.AccessRequest{Justification: form.Justification}
	for _, v := range p.VMs {
		vr := jit.VMRequest{ID: v.VM.ID}
		for _, pt := range v.Ports {
			if !pt.Checked {
				continue
			}
			_, port, _ := strings.Cut(pt.Value, "|")
			num, proto, _ := strings.Cut(port, "/")
			n, _ := strconv.Atoi(num)
			pr := jit.PortRequest{Number: n, Protocol: proto, Duration: duration, AllowedSourceAddressPrefix: "my-ip"}
			if form.Source == "range" {
				pr.AllowedSourceAddressPrefix = form.Range
			}
			vr.Ports = append(vr.Ports, pr)
		}
		if len(vr.Ports) > 0 {
			ar.VirtualMachines = append(ar.VirtualMachines, vr)
		}
	}
	switch {
	case form.Source == "range" && form.Range == "":
		form.Error = "Enter an address or range, or choose My IP."
	case form.Source != "range" && form.Range != "":
		form.Error = fmt.Sprintf("You typed %q as the address but chose My IP: choose which one to open for.", form.Range)
	case len(ar.VirtualMachines) == 0:
		form.Error = "Choose at least one port."
	}
	if form.Error == "" {
		if k := f.Get("key"); k != "" {
			ar.IdempotencyKey = "console-" + k
		}
		req, err := c.ctl.RequestAccess(r.Context(), a, ar)
		if err == nil && req.Status == jit.RequestPending {
			http.Redirect(w, r, "/requests?done=pending", http.StatusSeeOther)
			return nil
		}
		if err == nil {
			http.Redirect(w, r, "/access?opened="+url.QueryEscape(req.ID), http.StatusSeeOther)
			return nil
		}
		switch jit.ErrorCode(err) {
		case jit.EInvalid, jit.EForbidden, jit.EConflict:
			form.Error = jit.ErrorMessage(err)
		default:
			return err
		}
	}
	id := c.drafts.put(a.Name(), p, c.ctl.Now())
	http.Redirect(w, r, "/request?draft="+id, http.StatusSeeOther)
	return nil
}

func indexOfPort(ps []requestPort, v string) int {
	for i, p := range ps {
		if p.Value == v {
			return i
		}
	}
	return 0
}
