package console

import (
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/jit"
)

type tab struct {
	Key, Label string
	Active     bool
	URL        string
}

type vmRow struct {
	jit.VMView
	CanManage, CanRequest bool
}

type machinesPage struct {
	base
	Tab        string
	Tabs       []tab
	Query      string
	Group      string
	Groups     []string
	VMs        []vmRow
	Next, Prev string // links to the pages after and before this one
	// Reverse: sorted by group and name from Z to A; SortURL flips it.
	Reverse bool
	SortURL string
	// AnyManage, AnyRequest: the page's machines may be selected to enable
	// JIT on, or to request access to.
	AnyManage, AnyRequest bool
}

var tabs = []struct{ key, label string }{
	{jit.JITConfigured, "Configured"},
	{jit.JITNotConfigured, "Not configured"},
	{jit.JITUnsupported, "Unsupported"},
}

// MachinesPageSize is how many machines one page of a tab shows.
const MachinesPageSize = 50

func (c *Console) machines(w http.ResponseWriter, r *http.Request, a *control.Actor) error {
	q := r.URL.Query()
	p := machinesPage{base: c.base(a, "Machines", "machines"), Tab: q.Get("tab"), Query: strings.TrimSpace(q.Get("q")), Group: q.Get("group")}
	switch p.Tab {
	case jit.JITConfigured, jit.JITNotConfigured, jit.JITUnsupported:
	default:
		p.Tab = jit.JITConfigured
	}
	groups, err := c.ctl.ListGroups(r.Context(), a)
	if err != nil {
		return err
	}
	for _, g := range groups {
		p.Groups = append(p.Groups, g.Name)
	}
	if p.Group != "" && !contains(p.Groups, p.Group) {
		p.Group = ""
	}
	// "after" pages on, "before" back; each holds a cursor of ListVMs.
	cursor, back := q.Get("after"), false
	if b := q.Get("before"); b != "" {
		cursor, back = b, true
	}
	if d, ok := c.drafts.take(a.Name(), q.Get("result"), c.ctl.Now()); ok {
		if ad, ok := d.(adminDraft); ok {
			p.Notice = ad.Error
		}
	}
	p.Reverse = q.Get("sort") == "desc"
	vms, more, err := c.ctl.ListVMs(r.Context(), a, control.VMListFilter{Group: p.Group, JIT: p.Tab, Search: p.Query, Limit: MachinesPageSize, Cursor: cursor, Reverse: p.Reverse})
	if err != nil {
		return err
	}
	for _, v := range vms {
		p.VMs = append(p.VMs, vmRow{VMView: v, CanManage: a.Can(jit.PermManagePolicy, v.Group), CanRequest: v.Policy != nil && a.Can(jit.PermRequest, v.Group)})
		p.AnyManage = p.AnyManage || a.Can(jit.PermManagePolicy, v.Group)
		p.AnyRequest = p.AnyRequest || (v.Policy != nil && a.Can(jit.PermRequest, v.Group))
	}
	if p.Tab == jit.JITNotConfigured && !p.Reverse {
		// Within the page, unhealthy machines first.
		sort.SliceStable(p.VMs, func(i, j int) bool {
			return p.VMs[i].Classification.Health == jit.Unhealthy && p.VMs[j].Classification.Health != jit.Unhealthy
		})
	}
	filter := url.Values{"tab": {p.Tab}}
	if p.Query != "" {
		filter.Set("q", p.Query)
	}
	if p.Group != "" {
		filter.Set("group", p.Group)
	}
	if p.Reverse {
		filter.Set("sort", "desc")
	}
	sorted := url.Values{}
	for k, v := range filter {
		sorted[k] = v
	}
	if p.Reverse {
		sorted.Del("sort")
	} else {
		sorted.Set("sort", "desc")
	}
	p.SortURL = "/machines?" + sorted.Encode()
	link := func(k, v string) string {
		l := url.Values{k: {v}}
		for key, vals := range filter {
			l[key] = vals
		}
		return "/machines?" + l.Encode()
	}
	if len(vms) > 0 {
		first, last := vms[0], vms[len(vms)-1]
		switch {
		case back:
			p.Next = link("after", control.VMCursor(last.Group, last.Name, p.Reverse))
			if more != "" {
				p.Prev = link("before", more)
			}
		default:
			if more != "" {
				p.Next = link("after", more)
			}
			if cursor != "" {
				p.Prev = link("before", control.VMCursor(first.Group, first.Name, !p.Reverse))
			}
		}
	}
	for _, t := range tabs {
		v := url.Values{"tab": {t.key}}
		if p.Query != "" {
			v.Set("q", p.Query)
		}
		if p.Group != "" {
			v.Set("group", p.Group)
		}
		if p.Reverse {
			v.Set("sort", "desc")
		}
		p.Tabs = append(p.Tabs, tab{Key: t.key, Label: t.label, Active: t.key == p.Tab, URL: "/machines?" + v.Encode()})
	}
	return c.render(w, r, http.StatusOK, "machines.html", p)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
