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
	Count      int
	Active     bool
	URL        string
}

type vmRow struct {
	jit.VMView
	CanManage bool
}

type machinesPage struct {
	base
	Tab    string
	Tabs   []tab
	Query  string
	Group  string
	Groups []string
	VMs    []vmRow
	Total  int
}

var tabs = []struct{ key, label string }{
	{jit.JITConfigured, "Configured"},
	{jit.JITNotConfigured, "Not configured"},
	{jit.JITUnsupported, "Unsupported"},
}

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
	vms, err := c.ctl.ListVMs(r.Context(), a, control.VMListFilter{Group: p.Group})
	if err != nil {
		return err
	}
	counts := map[string]int{}
	needle := strings.ToLower(p.Query)
	for _, v := range vms {
		if needle != "" && !matches(v, needle) {
			continue
		}
		counts[v.Classification.JIT]++
		if v.Classification.JIT == p.Tab {
			p.VMs = append(p.VMs, vmRow{VMView: v, CanManage: a.Can(jit.PermManagePolicy, v.Group)})
		}
	}
	sort.Slice(p.VMs, func(i, j int) bool {
		x, y := p.VMs[i], p.VMs[j]
		if x.Classification.Health != y.Classification.Health {
			return x.Classification.Health == jit.Unhealthy // unhealthy first
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Group < y.Group
	})
	for _, t := range tabs {
		v := url.Values{"tab": {t.key}}
		if p.Query != "" {
			v.Set("q", p.Query)
		}
		if p.Group != "" {
			v.Set("group", p.Group)
		}
		p.Tabs = append(p.Tabs, tab{Key: t.key, Label: t.label, Count: counts[t.key], Active: t.key == p.Tab, URL: "/machines?" + v.Encode()})
		p.Total += counts[t.key]
	}
	return c.render(w, r, http.StatusOK, "machines.html", p)
}

// matches reports whether a VM's name, group, OS, addresses or labels
// contain needle (lower case).
func matches(v jit.VMView, needle string) bool {
	hay := []string{v.Name, v.Group, v.OS, v.Backend}
	hay = append(hay, v.Addresses...)
	for k, val := range v.Labels {
		hay = append(hay, k+"="+val)
	}
	for _, h := range hay {
		if strings.Contains(strings.ToLower(h), needle) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
