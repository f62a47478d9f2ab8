package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/jit"
)

// Azure's JIT policy resource, as ajard's Azure-compatible API serves it.
const (
	azureJITType       = "Microsoft.Security/locations/jitNetworkAccessPolicies"
	azureJITAPIVersion = "2020-01-01"
)

func (a *app) azureCommand() *cobra.Command {
	cmd := parent("azure", "Azure: discover VMs, import JIT policies from Defender for Cloud")
	cmd.AddCommand(a.azureImportCommand(), a.cloudSyncCommand(azureCloud)) // cloudSyncCommand: cloudsync.go
	return cmd
}

func (a *app) azureImportCommand() *cobra.Command {
	var o importOptions
	cmd := &cobra.Command{
		Use:   "import-policy FILE.json [--subscription ID] [--resource-group RG] [--location LOC] [--name NAME]",
		Short: "Create the JIT policies of an exported Azure JIT policy (ARM JSON) in ajar",
		Long: `import-policy reads JIT policies exported from Azure (Defender for Cloud) and creates
the same policies in ajar, through ajar's Azure-compatible API: the same name, resource
group (ajar group) and location, the same VMs and port rules. FILE ("-" for stdin) may be:

  - one Microsoft.Security/locations/jitNetworkAccessPolicies resource, as
    "az rest" or the REST API return it (GET .../jitNetworkAccessPolicies/NAME);
  - a list of them: {"value": [...]} or [...] ("az security jit-policy list");
  - an ARM template exported from the portal ("Export template"), whose
    jitNetworkAccessPolicies resources may use parameters(), variables(),
    concat(), format(), resourceId(), subscription() and resourceGroup().

VMs are matched by ARM id: Azure VMs that ajar discovered by their own id, other VMs by
/subscriptions/SUB/resourceGroups/GROUP/providers/Microsoft.Compute/virtualMachines/NAME.
The subscription must be one the server serves (ajard --azure-api-subscription or
--azure-subscriptions). An existing policy of the same name is replaced. The policies'
request history is not imported.
--subscription, --resource-group, --location and --name override what the file says.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			var err error
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(a.stdin, 16<<20))
			} else {
				b, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", args[0], err)
			}
			pols, err := parseAzurePolicies(b, o)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var done []json.RawMessage
			for i, p := range pols {
				var out json.RawMessage
				if err := c.Do(cmd.Context(), http.MethodPut, p.path(), p.body(), &out); err != nil {
					var e *jit.Error
					msg := "import JIT policy " + p.ref()
					if i > 0 {
						msg += fmt.Sprintf(" (%d of %d; the %d before it were imported)", i+1, len(pols), i)
					}
					if errors.As(err, &e) {
						return &jit.Error{Code: e.Code, Message: msg + ": " + e.Message, Target: e.Target}
					}
					return fmt.Errorf("%s: %w", msg, err)
				}
				done = append(done, out)
			}
			if a.asJSON() {
				return a.printJSON(done)
			}
			t := newTable(a.stdout, "POLICY", "VM", "PORTS")
			vms := 0
			for _, p := range pols {
				for _, v := range p.VMs {
					var ports []string
					for _, r := range v.Ports {
						ports = append(ports, fmt.Sprintf("%d/%s", r.Number, r.Protocol))
					}
					t.row(p.ref(), v.ID[strings.LastIndex(v.ID, "/")+1:], strings.Join(ports, ","))
					vms++
				}
			}
			t.flush()
			fmt.Fprintf(a.stdout, "Imported %d JIT %s (%d %s).\n", len(pols), plural(len(pols), "policy", "policies"), vms, plural(vms, "VM", "VMs"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.subscription, "subscription", "", "the subscription id to import into (default: the file's)")
	f.StringVar(&o.resourceGroup, "resource-group", "", "the resource group (ajar group) to import into (default: the file's)")
	f.StringVar(&o.location, "location", "", "the location of the policies (default: the file's)")
	f.StringVar(&o.name, "name", "", "the name of the policy (default: the file's; only with one policy)")
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

type importOptions struct {
	subscription, resourceGroup, location, name string
}

// azurePolicy is one JIT policy to import.
type azurePolicy struct {
	Subscription, ResourceGroup, Location, Name string
	VMs                                         []azureVM
}

type azureVM struct {
	ID    string      `json:"id"`
	Ports []azurePort `json:"ports"`
}

type azurePort struct {
	Number                       int      `json:"number"`
	Protocol                     string   `json:"protocol"`
	AllowedSourceAddressPrefix   string   `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string `json:"allowedSourceAddressPrefixes,omitempty"`
	MaxRequestAccessDuration     string   `json:"maxRequestAccessDuration"`
}

func (p azurePolicy) ref() string {
	return p.ResourceGroup + "/" + p.Location + "/" + p.Name
}

func (p azurePolicy) path() string {
	e := url.PathEscape
	return "/subscriptions/" + e(p.Subscription) + "/resourceGroups/" + e(p.ResourceGroup) +
		"/providers/Microsoft.Security/locations/" + e(p.Location) + "/jitNetworkAccessPolicies/" + e(p.Name) +
		"?api-version=" + azureJITAPIVersion
}

func (p azurePolicy) body() any {
	return map[string]any{"kind": "Basic", "location": p.Location, "properties": map[string]any{"virtualMachines": p.VMs}}
}

// rawPolicy is a policy resource as a file holds it.
type rawPolicy struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Location   string `json:"location"`
	Properties *struct {
		VirtualMachines []azureVM `json:"virtualMachines"`
	} `json:"properties"`
}

// parseAzurePolicies reads the policies of an exported file.
func parseAzurePolicies(b []byte, o importOptions) ([]azurePolicy, error) {
	var raws []rawPolicy
	ev := &armEval{sub: o.subscription, rg: o.resourceGroup, loc: o.location}
	var probe any
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch v := probe.(type) {
	case []any:
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, fmt.Errorf("not a list of JIT policies: %w", err)
		}
	case map[string]any:
		var obj struct {
			Value      []rawPolicy                `json:"value"`
			Resources  []json.RawMessage          `json:"resources"`
			Parameters map[string]json.RawMessage `json:"parameters"`
			Variables  map[string]json.RawMessage `json:"variables"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("not an exported JIT policy: %w", err)
		}
		switch {
		case v["resources"] != nil:
			ev.template, ev.params, ev.vars = true, obj.Parameters, obj.Variables
			for _, r := range obj.Resources {
				var rp rawPolicy
				if err := json.Unmarshal(r, &rp); err != nil {
					return nil, fmt.Errorf("template resource: %w", err)
				}
				if strings.EqualFold(rp.Type, azureJITType) {
					raws = append(raws, rp)
				}
			}
		case v["value"] != nil:
			raws = obj.Value
		default:
			var rp rawPolicy
			if err := json.Unmarshal(b, &rp); err != nil {
				return nil, fmt.Errorf("not an exported JIT policy: %w", err)
			}
			raws = []rawPolicy{rp}
		}
	default:
		return nil, errors.New("not an exported JIT policy: want a JSON object or list")
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("no %s resource found", azureJITType)
	}
	if o.name != "" && len(raws) > 1 {
		return nil, fmt.Errorf("--name applies to one policy, but the file has %d", len(raws))
	}
	var out []azurePolicy
	for i, r := range raws {
		p, err := ev.policy(r, o)
		if err != nil {
			return nil, fmt.Errorf("policy %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// policy resolves one raw policy: ids from the resource's id, else from
// its name and location, else from its VMs' ids; the options win.
func (e *armEval) policy(r rawPolicy, o importOptions) (azurePolicy, error) {
	if r.Type != "" && !strings.EqualFold(r.Type, azureJITType) {
		return azurePolicy{}, fmt.Errorf("resource type is %s, not %s", r.Type, azureJITType)
	}
	if r.Properties == nil || len(r.Properties.VirtualMachines) == 0 {
		return azurePolicy{}, errors.New("it has no properties.virtualMachines")
	}
	var p azurePolicy
	for _, v := range r.Properties.VirtualMachines {
		id, err := e.str(v.ID)
		if err != nil {
			return p, fmt.Errorf("virtual machine id %s: %w", v.ID, err)
		}
		nv := azureVM{ID: id}
		for _, port := range v.Ports {
			if port.Protocol, err = e.str(port.Protocol); err != nil {
				return p, err
			}
			if port.MaxRequestAccessDuration, err = e.str(port.MaxRequestAccessDuration); err != nil {
				return p, err
			}
			if port.AllowedSourceAddressPrefix, err = e.str(port.AllowedSourceAddressPrefix); err != nil {
				return p, err
			}
			for i, s := range port.AllowedSourceAddressPrefixes {
				if port.AllowedSourceAddressPrefixes[i], err = e.str(s); err != nil {
					return p, err
				}
			}
			nv.Ports = append(nv.Ports, port)
		}
		p.VMs = append(p.VMs, nv)
	}
	name, err := e.str(r.Name)
	if err != nil {
		return p, fmt.Errorf("name %s: %w", r.Name, err)
	}
	loc, err := e.str(r.Location)
	if err != nil {
		return p, fmt.Errorf("location %s: %w", r.Location, err)
	}
	id, err := e.str(r.ID)
	if err != nil {
		return p, fmt.Errorf("id %s: %w", r.ID, err)
	}
	if id != "" {
		parts := armParts(id)
		p.Subscription, p.ResourceGroup, p.Location, p.Name = parts["subscriptions"], parts["resourcegroups"], parts["locations"], parts["jitnetworkaccesspolicies"]
	}
	// A template names the policy "location/name".
	if l, n, ok := strings.Cut(name, "/"); ok {
		loc, name = cmpOr(loc, l), n
	}
	vm := armParts(p.VMs[0].ID)
	p.Subscription = cmpOr(o.subscription, p.Subscription, vm["subscriptions"])
	p.ResourceGroup = cmpOr(o.resourceGroup, p.ResourceGroup, vm["resourcegroups"])
	p.Location = cmpOr(o.location, p.Location, loc)
	p.Name = cmpOr(o.name, p.Name, name)
	for _, c := range []struct{ what, flag, v string }{
		{"subscription", "subscription", p.Subscription}, {"resource group", "resource-group", p.ResourceGroup},
		{"location", "location", p.Location}, {"name", "name", p.Name},
	} {
		if c.v == "" {
			return p, fmt.Errorf("the file does not say the policy's %s; give --%s", c.what, c.flag)
		}
	}
	return p, nil
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// armParts maps the lower-cased keys of an ARM id to their values:
// /subscriptions/S/resourceGroups/R/... gives subscriptions=S, resourcegroups=R.
func armParts(id string) map[string]string {
	out := map[string]string{}
	segs := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+1 < len(segs); i += 2 {
		out[strings.ToLower(segs[i])] = segs[i+1] // and providers=NAMESPACE
	}
	return out
}

// armEval evaluates the template expressions an exported ARM template
// uses in string values ("[parameters('vm')]"); outside templates strings
// are taken as they are.
type armEval struct {
	template     bool
	params, vars map[string]json.RawMessage
	sub, rg, loc string
	depth        int
}

func (e *armEval) str(s string) (string, error) {
	if !e.template || !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return s, nil
	}
	if strings.HasPrefix(s, "[[") {
		return s[1:], nil // an escaped literal
	}
	v, err := e.eval(s[1 : len(s)-1])
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("expression %s is not a string", s)
}

func (e *armEval) eval(expr string) (any, error) {
	if e.depth > 16 {
		return nil, errors.New("template expressions nest too deeply")
	}
	e.depth++
	defer func() { e.depth-- }()
	p := &exprParser{s: expr, e: e}
	v, err := p.value()
	if err == nil {
		p.space()
		if p.i != len(p.s) {
			err = fmt.Errorf("unexpected %q", p.s[p.i:])
		}
	}
	if err != nil {
		return nil, fmt.Errorf("template expression [%s]: %w", expr, err)
	}
	return v, nil
}

// exprParser parses one ARM template expression.
type exprParser struct {
	s string
	i int
	e *armEval
}

func (p *exprParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *exprParser) value() (any, error) {
	p.space()
	if p.i >= len(p.s) {
		return nil, errors.New("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '\'':
		var b strings.Builder
		for p.i++; p.i < len(p.s); p.i++ {
			if p.s[p.i] == '\'' {
				if p.i+1 < len(p.s) && p.s[p.i+1] == '\'' {
					b.WriteByte('\'')
					p.i++
					continue
				}
				p.i++
				return b.String(), nil
			}
			b.WriteByte(p.s[p.i])
		}
		return nil, errors.New("unterminated string")
	case c == '-' || (c >= '0' && c <= '9'):
		j := p.i + 1
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		n, err := strconv.ParseFloat(p.s[p.i:j], 64)
		p.i = j
		return n, err
	}
	j := p.i
	for j < len(p.s) && (p.s[j] == '_' || p.s[j] >= 'a' && p.s[j] <= 'z' || p.s[j] >= 'A' && p.s[j] <= 'Z' || p.s[j] >= '0' && p.s[j] <= '9') {
		j++
	}
	name := p.s[p.i:j]
	p.i = j
	p.space()
	if name == "" || p.i >= len(p.s) || p.s[p.i] != '(' {
		return nil, fmt.Errorf("want a function call at %q", p.s[j:])
	}
	p.i++
	var args []any
	for {
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ')' {
			p.i++
			break
		}
		if len(args) > 0 {
			if p.i >= len(p.s) || p.s[p.i] != ',' {
				return nil, errors.New("want , or ) between arguments")
			}
			p.i++
		}
		a, err := p.value()
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	v, err := p.e.call(strings.ToLower(name), args)
	if err != nil {
		return nil, err
	}
	for p.space(); p.i < len(p.s) && p.s[p.i] == '.'; p.space() {
		p.i++
		j := p.i
		for j < len(p.s) && (p.s[j] >= 'a' && p.s[j] <= 'z' || p.s[j] >= 'A' && p.s[j] <= 'Z') {
			j++
		}
		m, ok := v.(map[string]any)
		prop := p.s[p.i:j]
		p.i = j
		if !ok || m[strings.ToLower(prop)] == nil {
			return nil, fmt.Errorf("%s() has no property %s here", name, prop)
		}
		v = m[strings.ToLower(prop)]
	}
	return v, nil
}

func (e *armEval) call(fn string, args []any) (any, error) {
	strs := make([]string, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case string:
			strs[i] = a
		case float64:
			strs[i] = strconv.FormatFloat(a, 'f', -1, 64)
		default:
			return nil, fmt.Errorf("%s(): argument %d is not a string", fn, i+1)
		}
	}
	need := func(what, flag, v string) (string, error) {
		if v == "" {
			return "", fmt.Errorf("the template uses %s; give --%s", what, flag)
		}
		return v, nil
	}
	switch fn {
	case "parameters", "variables":
		if len(strs) != 1 {
			return nil, fmt.Errorf("%s() takes one argument", fn)
		}
		if fn == "variables" {
			raw, ok := e.vars[strs[0]]
			if !ok {
				return nil, fmt.Errorf("no variable %q", strs[0])
			}
			return e.rawValue(raw)
		}
		raw, ok := e.params[strs[0]]
		if !ok {
			return nil, fmt.Errorf("no parameter %q", strs[0])
		}
		var def struct {
			DefaultValue json.RawMessage `json:"defaultValue"`
		}
		if json.Unmarshal(raw, &def) != nil || def.DefaultValue == nil {
			return nil, fmt.Errorf("parameter %q has no defaultValue", strs[0])
		}
		return e.rawValue(def.DefaultValue)
	case "concat":
		return strings.Join(strs, ""), nil
	case "format":
		if len(strs) == 0 {
			return nil, errors.New("format() needs a format string")
		}
		s := strs[0]
		for i, a := range strs[1:] {
			s = strings.ReplaceAll(s, "{"+strconv.Itoa(i)+"}", a)
		}
		return s, nil
	case "tolower":
		return strings.ToLower(strings.Join(strs, "")), nil
	case "toupper":
		return strings.ToUpper(strings.Join(strs, "")), nil
	case "subscription":
		sub, err := need("subscription()", "subscription", e.sub)
		return map[string]any{"subscriptionid": sub, "id": "/subscriptions/" + sub}, err
	case "resourcegroup":
		m := map[string]any{}
		if e.rg != "" {
			m["name"] = e.rg
		}
		if e.loc != "" {
			m["location"] = e.loc
		}
		return m, nil
	case "resourceid":
		// resourceId([subscriptionId], [resourceGroupName], type, name...)
		t := -1
		for i, s := range strs {
			if ns, _, ok := strings.Cut(s, "/"); ok && strings.Contains(ns, ".") {
				t = i
				break
			}
		}
		if t < 0 || t > 2 || len(strs) < t+2 {
			return nil, errors.New("resourceId() needs a resource type and names")
		}
		sub, rg := e.sub, e.rg
		if t == 2 {
			sub, rg = strs[0], strs[1]
		} else if t == 1 {
			rg = strs[0]
		}
		var err error
		if sub, err = need("resourceId() without a subscription", "subscription", sub); err != nil {
			return nil, err
		}
		if rg, err = need("resourceId() without a resource group", "resource-group", rg); err != nil {
			return nil, err
		}
		types := strings.Split(strs[t], "/")
		names := strs[t+1:]
		if len(names) != len(types)-1 {
			return nil, fmt.Errorf("resourceId(): type %s needs %d names, got %d", strs[t], len(types)-1, len(names))
		}
		id := "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/" + types[0]
		for i, n := range names {
			id += "/" + types[i+1] + "/" + n
		}
		return id, nil
	}
	return nil, fmt.Errorf("ajar does not evaluate %s()", fn)
}

// rawValue is a parameter's or variable's value, itself evaluated when it
// is an expression.
func (e *armEval) rawValue(raw json.RawMessage) (any, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	if s, ok := v.(string); ok {
		return e.str(s)
	}
	return v, nil
}
