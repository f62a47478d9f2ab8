// Package computefake is an in-memory Google Compute Engine REST API for
// tests: instances (list, aggregatedList, get, setTags with its
// fingerprint), VPC firewall rules (list, get, insert, patch, delete) and
// the zone and global operations they return, served on a loopback
// httptest server in the API's JSON wire format (the compute/v1 paths,
// pageToken paging, the {"error":{"code","message","errors":[{"reason"}]}}
// error body). The official SDK (cloud.google.com/go/compute/apiv1, REST
// transport) talks to it through ClientOptions, so that its request
// building, paging and error decoding run for real.
//
// It also answers the question the firewall exists for (Reachable),
// evaluating the rules as VPC firewalls do, and lets a test inject
// throttling, permission refusals and a firewall quota.
package computefake

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// apiBase is how the real API spells its resources' self links.
const apiBase = "https://www.googleapis.com/compute/v1/"

// Compute is the fake API. Its methods are safe for concurrent use.
type Compute struct {
	srv *httptest.Server

	mu        sync.Mutex
	instances map[string]*computepb.Instance  // "project/zone/name"
	zones     map[string][]string             // project -> zones known (also empty ones)
	firewalls map[string]*computepb.Firewall  // "project/name"
	ops       map[string]*computepb.Operation // by name
	nextID    uint64
	faults    []*fault
	opFaults  []*opFault
	quota     map[string]int // project -> max firewall rules
	calls     map[string]int // "METHOD kind" -> count

	// PageSize caps the items of one list page (default 500, the API's).
	PageSize int
	// OperationPolls is how many polls answer an operation as still
	// running before it is done (default 0: done on the first poll).
	OperationPolls int
	polls          map[string]int // operation name -> polls left
}

type fault struct {
	match   func(r *http.Request) bool
	left    int // <0: forever
	code    int
	reason  string
	message string
}

// New starts a fake on loopback; it stops when the test ends.
func New(t testing.TB) *Compute {
	c := &Compute{
		instances: map[string]*computepb.Instance{},
		zones:     map[string][]string{},
		firewalls: map[string]*computepb.Firewall{},
		ops:       map[string]*computepb.Operation{},
		quota:     map[string]int{},
		calls:     map[string]int{},
		polls:     map[string]int{},
		nextID:    1000,
		PageSize:  500,
	}
	mux := http.NewServeMux()
	const p = "/compute/v1/projects/{project}"
	mux.HandleFunc("GET "+p+"/zones/{zone}/instances", c.listInstances)
	mux.HandleFunc("GET "+p+"/aggregated/instances", c.aggregatedInstances)
	mux.HandleFunc("GET "+p+"/zones/{zone}/instances/{name}", c.getInstance)
	mux.HandleFunc("POST "+p+"/zones/{zone}/instances/{name}/setTags", c.setTags)
	mux.HandleFunc("GET "+p+"/zones/{zone}/operations/{op}", c.getOperation)
	mux.HandleFunc("GET "+p+"/global/operations/{op}", c.getOperation)
	mux.HandleFunc("GET "+p+"/global/firewalls", c.listFirewalls)
	mux.HandleFunc("POST "+p+"/global/firewalls", c.insertFirewall)
	mux.HandleFunc("GET "+p+"/global/firewalls/{name}", c.getFirewall)
	mux.HandleFunc("PATCH "+p+"/global/firewalls/{name}", c.patchFirewall)
	mux.HandleFunc("DELETE "+p+"/global/firewalls/{name}", c.deleteFirewall)
	c.srv = httptest.NewServer(c.intercept(mux))
	t.Cleanup(c.srv.Close)
	return c
}

// ClientOptions point an SDK client at the fake, without credentials.
func (c *Compute) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(c.srv.URL),
		option.WithoutAuthentication(),
		option.WithHTTPClient(c.srv.Client()),
	}
}

// intercept counts calls and answers injected faults.
func (c *Compute) intercept(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.calls[r.Method+" "+kindOf(r.URL.Path)]++
		var hit *fault
		for i, f := range c.faults {
			if f.match(r) {
				hit = f
				if f.left > 0 {
					if f.left--; f.left == 0 {
						c.faults = slices.Delete(c.faults, i, i+1)
					}
				}
				break
			}
		}
		c.mu.Unlock()
		if hit != nil {
			writeError(w, hit.code, hit.reason, hit.message)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// kindOf names what a request path reaches: "instances", "setTags",
// "aggregated", "firewalls", "operations".
func kindOf(path string) string {
	switch {
	case strings.HasSuffix(path, "/setTags"):
		return "setTags"
	case strings.Contains(path, "/aggregated/"):
		return "aggregated"
	case strings.Contains(path, "/operations/"):
		return "operations"
	case strings.Contains(path, "/firewalls"):
		return "firewalls"
	case strings.Contains(path, "/instances"):
		return "instances"
	}
	return path
}

// Calls returns how many requests of method reached kind ("GET
// firewalls", "POST setTags", ...), faults included.
func (c *Compute) Calls(method, kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method+" "+kind]
}

// Fail makes the next n requests of method (any when "") whose path
// contains pathPart fail with the HTTP status code and the error reason
// (n < 0: every such request, until Heal).
func (c *Compute) Fail(method, pathPart string, n, code int, reason, message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, &fault{
		match: func(r *http.Request) bool {
			return (method == "" || r.Method == method) && strings.Contains(r.URL.Path, pathPart)
		},
		left: n, code: code, reason: reason, message: message,
	})
}

// Throttle makes the next n requests whose path contains pathPart answer
// 429 rateLimitExceeded, as the API does when a project's rate quota runs
// out.
func (c *Compute) Throttle(pathPart string, n int) {
	c.Fail("", pathPart, n, http.StatusTooManyRequests, "rateLimitExceeded",
		"Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.")
}

// Heal removes every injected fault.
func (c *Compute) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults, c.opFaults = nil, nil
}

type opFault struct {
	kind          string
	left          int
	status        int
	code, message string
}

// FailOperation makes the next n operations of kind ("insert", "patch",
// "delete", "setTags") fail once polled, with the HTTP status and the
// operation error code ("QUOTA_EXCEEDED"), changing nothing: the request
// itself is accepted, as the real API accepts a change it then fails.
func (c *Compute) FailOperation(kind string, n, status int, code, message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opFaults = append(c.opFaults, &opFault{kind: kind, left: n, status: status, code: code, message: message})
}

// failedOperation answers a change of kind with a failing operation when
// one is due, and reports whether it did.
func (c *Compute) failedOperation(w http.ResponseWriter, project, zone, kind, target string) bool {
	for i, f := range c.opFaults {
		if f.kind != kind {
			continue
		}
		if f.left--; f.left <= 0 {
			c.opFaults = slices.Delete(c.opFaults, i, i+1)
		}
		running := c.operation(project, zone, kind, target, 0)
		done := c.ops[running.GetName()]
		done.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(f.code), Message: proto.String(f.message)}}}
		done.HttpErrorStatusCode = proto.Int32(int32(f.status))
		done.HttpErrorMessage = proto.String(strings.ToUpper(strings.ReplaceAll(http.StatusText(f.status), " ", "_")))
		writeJSON(w, running)
		return true
	}
	return false
}

// SetFirewallQuota limits project to n firewall rules (the FIREWALLS
// quota); an insert beyond it answers 403 quotaExceeded.
func (c *Compute) SetFirewallQuota(project string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quota[project] = n
}

// InstanceSpec describes an instance to add.
type InstanceSpec struct {
	Project, Zone, Name string
	Network             string // network name in Project, or a full network URL (Shared VPC); default "default"
	InternalIP          string
	ExternalIP          string // "": none
	IPv6                string // external IPv6 address; "": none
	Status              string // default RUNNING
	Tags                []string
	ServiceAccount      string
	Windows             bool
	// MoreNetworks gives the instance further interfaces (nic1, ...), one
	// in each of these networks (names or URLs, as Network), with
	// internal addresses 10.99.<i>.2.
	MoreNetworks []string
}

// AddInstance adds an instance and returns it.
func (c *Compute) AddInstance(s InstanceSpec) *computepb.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	nic := &computepb.NetworkInterface{
		Name:       proto.String("nic0"),
		Network:    proto.String(c.networkURL(s.Project, cmp.Or(s.Network, "default"))),
		Subnetwork: proto.String(apiBase + "projects/" + s.Project + "/regions/" + region(s.Zone) + "/subnetworks/default"),
		NetworkIP:  proto.String(s.InternalIP),
		StackType:  proto.String("IPV4_ONLY"),
	}
	if s.ExternalIP != "" {
		nic.AccessConfigs = []*computepb.AccessConfig{{Name: proto.String("External NAT"), Type: proto.String("ONE_TO_ONE_NAT"), NatIP: proto.String(s.ExternalIP)}}
	}
	if s.IPv6 != "" {
		nic.StackType = proto.String("IPV4_IPV6")
		nic.Ipv6AccessConfigs = []*computepb.AccessConfig{{Name: proto.String("external-ipv6"), Type: proto.String("DIRECT_IPV6"),
			ExternalIpv6: proto.String(s.IPv6), ExternalIpv6PrefixLength: proto.Int32(96)}}
	}
	nics := []*computepb.NetworkInterface{nic}
	for i, n := range s.MoreNetworks {
		nics = append(nics, &computepb.NetworkInterface{
			Name:      proto.String(fmt.Sprintf("nic%d", i+1)),
			Network:   proto.String(c.networkURL(s.Project, n)),
			NetworkIP: proto.String(fmt.Sprintf("10.99.%d.2", i+1)),
			StackType: proto.String("IPV4_ONLY"),
		})
	}
	c.nextID++
	in := &computepb.Instance{
		Kind:              proto.String("compute#instance"),
		Id:                proto.Uint64(c.nextID),
		Name:              proto.String(s.Name),
		Zone:              proto.String(apiBase + "projects/" + s.Project + "/zones/" + s.Zone),
		Status:            proto.String(cmp.Or(s.Status, "RUNNING")),
		Tags:              &computepb.Tags{Items: slices.Clone(s.Tags), Fingerprint: proto.String(c.fingerprint())},
		NetworkInterfaces: nics,
		SelfLink:          proto.String(apiBase + "projects/" + s.Project + "/zones/" + s.Zone + "/instances/" + s.Name),
		MachineType:       proto.String(apiBase + "projects/" + s.Project + "/zones/" + s.Zone + "/machineTypes/e2-small"),
	}
	if s.ServiceAccount != "" {
		in.ServiceAccounts = []*computepb.ServiceAccount{{Email: proto.String(s.ServiceAccount), Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}}
	}
	disk := &computepb.AttachedDisk{Boot: proto.Bool(true), DeviceName: proto.String(s.Name)}
	if s.Windows {
		disk.GuestOsFeatures = []*computepb.GuestOsFeature{{Type: proto.String("WINDOWS")}}
		disk.Licenses = []string{apiBase + "projects/windows-cloud/global/licenses/windows-server-2022-dc"}
	} else {
		disk.Licenses = []string{apiBase + "projects/debian-cloud/global/licenses/debian-12-bookworm"}
	}
	in.Disks = []*computepb.AttachedDisk{disk}
	c.instances[s.Project+"/"+s.Zone+"/"+s.Name] = in
	c.addZone(s.Project, s.Zone)
	return proto.Clone(in).(*computepb.Instance)
}

// AddZone makes zone known in project even without instances (the
// aggregated list then reports it empty).
func (c *Compute) AddZone(project, zone string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addZone(project, zone)
}

func (c *Compute) addZone(project, zone string) {
	if !slices.Contains(c.zones[project], zone) {
		c.zones[project] = append(c.zones[project], zone)
		slices.Sort(c.zones[project])
	}
}

// DeleteInstance deletes an instance.
func (c *Compute) DeleteInstance(project, zone, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.instances, project+"/"+zone+"/"+name)
}

// SetStatus sets an instance's status (RUNNING, TERMINATED, ...).
func (c *Compute) SetStatus(project, zone, name, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.instances[project+"/"+zone+"/"+name]; in != nil {
		in.Status = proto.String(status)
	}
}

// Instance returns a copy of an instance, nil when there is none.
func (c *Compute) Instance(project, zone, name string) *computepb.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := c.instances[project+"/"+zone+"/"+name]
	if in == nil {
		return nil
	}
	return proto.Clone(in).(*computepb.Instance)
}

// AddFirewall adds a firewall rule directly (as someone else would),
// filling in the API's defaults; network may be a name.
func (c *Compute) AddFirewall(project string, fw *computepb.Firewall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fw = proto.Clone(fw).(*computepb.Firewall)
	c.fillFirewall(project, fw)
	c.firewalls[project+"/"+fw.GetName()] = fw
}

// Firewalls returns copies of the firewall rules of project by name.
func (c *Compute) Firewalls(project string) map[string]*computepb.Firewall {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*computepb.Firewall{}
	for k, fw := range c.firewalls {
		if p, name, _ := strings.Cut(k, "/"); p == project {
			out[name] = proto.Clone(fw).(*computepb.Firewall)
		}
	}
	return out
}

// Rule returns an allow (or deny) rule from 0.0.0.0/0 for tcp and udp
// ports on network, at priority, targeting targetTags (all instances
// when none).
func Rule(name string, priority int32, allow bool, source string, ports []string, targetTags ...string) *computepb.Firewall {
	fw := &computepb.Firewall{
		Name:         proto.String(name),
		Network:      proto.String("default"),
		Priority:     proto.Int32(priority),
		Direction:    proto.String("INGRESS"),
		SourceRanges: []string{source},
		TargetTags:   targetTags,
	}
	for _, p := range []string{"tcp", "udp"} {
		if allow {
			fw.Allowed = append(fw.Allowed, &computepb.Allowed{IPProtocol: proto.String(p), Ports: ports})
		} else {
			fw.Denied = append(fw.Denied, &computepb.Denied{IPProtocol: proto.String(p), Ports: ports})
		}
	}
	return fw
}

func (c *Compute) networkURL(project, network string) string {
	switch {
	case strings.HasPrefix(network, "https://"):
		return network
	case strings.HasPrefix(network, "projects/"):
		return apiBase + network
	case strings.HasPrefix(network, "global/"):
		return apiBase + "projects/" + project + "/" + network
	}
	return apiBase + "projects/" + project + "/global/networks/" + network
}

func region(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

func (c *Compute) fingerprint() string {
	c.nextID++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], c.nextID*2654435761)
	return base64.StdEncoding.EncodeToString(b[:])
}

// fillFirewall sets the defaults the API sets on insert.
func (c *Compute) fillFirewall(project string, fw *computepb.Firewall) {
	c.nextID++
	fw.Kind = proto.String("compute#firewall")
	fw.Id = proto.Uint64(c.nextID)
	fw.Network = proto.String(c.networkURL(project, cmp.Or(fw.GetNetwork(), "default")))
	fw.SelfLink = proto.String(apiBase + "projects/" + project + "/global/firewalls/" + fw.GetName())
	fw.CreationTimestamp = proto.String("2026-01-02T03:04:05.000-07:00")
	if fw.Priority == nil {
		fw.Priority = proto.Int32(1000)
	}
	if fw.Direction == nil {
		fw.Direction = proto.String("INGRESS")
	}
	if fw.Disabled == nil {
		fw.Disabled = proto.Bool(false)
	}
}

// ---- HTTP handlers ----

func writeJSON(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(m)
	if err != nil {
		writeError(w, 500, "backendError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Write(b)
}

// writeError writes the API's error body.
func writeError(w http.ResponseWriter, code int, reason, message string) {
	domain := "global"
	if code == http.StatusTooManyRequests || reason == "quotaExceeded" || strings.Contains(reason, "RateLimit") {
		domain = "usageLimits"
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"error":{"code":%d,"message":%s,"errors":[{"message":%s,"domain":%q,"reason":%q}]}}`,
		code, strconv.Quote(message), strconv.Quote(message), domain, reason)
}

func notFound(w http.ResponseWriter, what string) {
	writeError(w, http.StatusNotFound, "notFound", "The resource '"+what+"' was not found")
}

// page returns the items of one page of n items and the next page token.
func (c *Compute) page(r *http.Request, n int) (from, to int, next string, err error) {
	size := c.PageSize
	if s := r.URL.Query().Get("maxResults"); s != "" {
		m, err := strconv.Atoi(s)
		if err != nil || m < 0 {
			return 0, 0, "", fmt.Errorf("Invalid value for field 'maxResults': '%s'", s)
		}
		if m > 0 && m < size {
			size = m
		}
	}
	if tok := r.URL.Query().Get("pageToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return 0, 0, "", fmt.Errorf("Invalid value for field 'pageToken': '%s'", tok)
		}
		if from, err = strconv.Atoi(string(b)); err != nil || from < 0 || from > n {
			return 0, 0, "", fmt.Errorf("Invalid value for field 'pageToken': '%s'", tok)
		}
	}
	to = min(n, from+size)
	if to < n {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(to)))
	}
	return from, to, next, nil
}

func (c *Compute) sortedInstances(project, zone string) []*computepb.Instance {
	var out []*computepb.Instance
	for k, in := range c.instances {
		parts := strings.Split(k, "/")
		if parts[0] == project && (zone == "" || parts[1] == zone) {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b *computepb.Instance) int {
		return cmp.Or(cmp.Compare(a.GetZone(), b.GetZone()), cmp.Compare(a.GetName(), b.GetName()))
	})
	return out
}

func (c *Compute) listInstances(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := c.sortedInstances(r.PathValue("project"), r.PathValue("zone"))
	from, to, next, err := c.page(r, len(all))
	if err != nil {
		writeError(w, 400, "invalid", err.Error())
		return
	}
	resp := &computepb.InstanceList{Kind: proto.String("compute#instanceList"), Items: all[from:to]}
	if next != "" {
		resp.NextPageToken = proto.String(next)
	}
	writeJSON(w, resp)
}

func (c *Compute) aggregatedInstances(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	project := r.PathValue("project")
	all := c.sortedInstances(project, "")
	from, to, next, err := c.page(r, len(all))
	if err != nil {
		writeError(w, 400, "invalid", err.Error())
		return
	}
	resp := &computepb.InstanceAggregatedList{Kind: proto.String("compute#instanceAggregatedList"), Items: map[string]*computepb.InstancesScopedList{}}
	for _, in := range all[from:to] {
		key := "zones/" + in.GetZone()[strings.LastIndex(in.GetZone(), "/")+1:]
		sl := resp.Items[key]
		if sl == nil {
			sl = &computepb.InstancesScopedList{}
			resp.Items[key] = sl
		}
		sl.Instances = append(sl.Instances, in)
	}
	if from == 0 {
		for _, z := range c.zones[project] {
			if resp.Items["zones/"+z] == nil {
				resp.Items["zones/"+z] = &computepb.InstancesScopedList{Warning: &computepb.Warning{
					Code:    proto.String("NO_RESULTS_ON_PAGE"),
					Message: proto.String("There are no results for scope 'zones/" + z + "' on this page."),
					Data:    []*computepb.Data{{Key: proto.String("scope"), Value: proto.String("zones/" + z)}},
				}}
			}
		}
	}
	if next != "" {
		resp.NextPageToken = proto.String(next)
	}
	writeJSON(w, resp)
}

func (c *Compute) getInstance(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, z, n := r.PathValue("project"), r.PathValue("zone"), r.PathValue("name")
	in := c.instances[p+"/"+z+"/"+n]
	if in == nil {
		notFound(w, "projects/"+p+"/zones/"+z+"/instances/"+n)
		return
	}
	writeJSON(w, in)
}

var tagPattern = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (c *Compute) setTags(w http.ResponseWriter, r *http.Request) {
	var tags computepb.Tags
	if !decode(w, r, &tags) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, z, n := r.PathValue("project"), r.PathValue("zone"), r.PathValue("name")
	in := c.instances[p+"/"+z+"/"+n]
	if in == nil {
		notFound(w, "projects/"+p+"/zones/"+z+"/instances/"+n)
		return
	}
	if tags.GetFingerprint() != in.GetTags().GetFingerprint() {
		writeError(w, http.StatusPreconditionFailed, "conditionNotMet",
			"Supplied fingerprint does not match current metadata fingerprint.")
		return
	}
	if len(tags.Items) > 64 {
		writeError(w, 400, "invalid", "Invalid value for field 'resource.tags.items': too many tags (at most 64).")
		return
	}
	for _, t := range tags.Items {
		if !tagPattern.MatchString(t) {
			writeError(w, 400, "invalid", fmt.Sprintf("Invalid value for field 'resource.tags.items[]': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", t))
			return
		}
	}
	if c.failedOperation(w, p, z, "setTags", in.GetSelfLink()) {
		return
	}
	in.Tags = &computepb.Tags{Items: tags.Items, Fingerprint: proto.String(c.fingerprint())}
	writeJSON(w, c.operation(p, z, "setTags", in.GetSelfLink(), in.GetId()))
}

// operation records a finished operation and returns it as running.
func (c *Compute) operation(project, zone, kind, target string, targetID uint64) *computepb.Operation {
	c.nextID++
	name := fmt.Sprintf("operation-%d", c.nextID)
	scope := "projects/" + project + "/global"
	if zone != "" {
		scope = "projects/" + project + "/zones/" + zone
	}
	op := &computepb.Operation{
		Kind:          proto.String("compute#operation"),
		Id:            proto.Uint64(c.nextID),
		Name:          proto.String(name),
		OperationType: proto.String(kind),
		TargetLink:    proto.String(target),
		TargetId:      proto.Uint64(targetID),
		Status:        computepb.Operation_DONE.Enum(),
		Progress:      proto.Int32(100),
		InsertTime:    proto.String("2026-01-02T03:04:05.000-07:00"),
		StartTime:     proto.String("2026-01-02T03:04:05.000-07:00"),
		EndTime:       proto.String("2026-01-02T03:04:05.000-07:00"),
		SelfLink:      proto.String(apiBase + scope + "/operations/" + name),
	}
	if zone != "" {
		op.Zone = proto.String(apiBase + "projects/" + project + "/zones/" + zone)
	}
	c.ops[name] = op
	if c.OperationPolls > 0 {
		c.polls[name] = c.OperationPolls
	}
	// The change is made; the caller learns so by polling, as from the
	// real API, whose answer to a change is a running operation.
	running := proto.Clone(op).(*computepb.Operation)
	running.Status, running.Progress, running.EndTime = computepb.Operation_RUNNING.Enum(), proto.Int32(0), nil
	return running
}

func (c *Compute) getOperation(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	scope := "projects/" + r.PathValue("project") + "/global"
	if z := r.PathValue("zone"); z != "" {
		scope = "projects/" + r.PathValue("project") + "/zones/" + z
	}
	op := c.ops[r.PathValue("op")]
	if op == nil || op.GetSelfLink() != apiBase+scope+"/operations/"+r.PathValue("op") {
		notFound(w, scope+"/operations/"+r.PathValue("op"))
		return
	}
	if c.polls[op.GetName()] > 0 {
		c.polls[op.GetName()]--
		running := proto.Clone(op).(*computepb.Operation)
		running.Status, running.Progress, running.EndTime, running.Error = computepb.Operation_RUNNING.Enum(), proto.Int32(50), nil, nil
		running.HttpErrorStatusCode, running.HttpErrorMessage = nil, nil
		writeJSON(w, running)
		return
	}
	writeJSON(w, op)
}

func (c *Compute) listFirewalls(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	project := r.PathValue("project")
	var all []*computepb.Firewall
	for k, fw := range c.firewalls {
		if p, _, _ := strings.Cut(k, "/"); p == project {
			all = append(all, fw)
		}
	}
	slices.SortFunc(all, func(a, b *computepb.Firewall) int { return cmp.Compare(a.GetName(), b.GetName()) })
	from, to, next, err := c.page(r, len(all))
	if err != nil {
		writeError(w, 400, "invalid", err.Error())
		return
	}
	resp := &computepb.FirewallList{Kind: proto.String("compute#firewallList"), Items: all[from:to]}
	if next != "" {
		resp.NextPageToken = proto.String(next)
	}
	writeJSON(w, resp)
}

func (c *Compute) getFirewall(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, n := r.PathValue("project"), r.PathValue("name")
	fw := c.firewalls[p+"/"+n]
	if fw == nil {
		notFound(w, "projects/"+p+"/global/firewalls/"+n)
		return
	}
	writeJSON(w, fw)
}

var namePattern = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// checkFirewall validates a rule as the API does (the parts ajar uses).
func checkFirewall(fw *computepb.Firewall) string {
	if !namePattern.MatchString(fw.GetName()) {
		return fmt.Sprintf("Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", fw.GetName())
	}
	if p := fw.GetPriority(); p < 0 || p > 65535 {
		return fmt.Sprintf("Invalid value for field 'resource.priority': '%d'. Must be greater than or equal to 0 and less than or equal to 65535", p)
	}
	if (len(fw.Allowed) > 0) == (len(fw.Denied) > 0) {
		return "Invalid value for field 'resource': exactly one of 'allowed' or 'denied' must be specified"
	}
	if len(fw.GetDescription()) > 2048 {
		return "Invalid value for field 'resource.description': too long"
	}
	var v4, v6 bool
	for _, s := range fw.SourceRanges {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Sprintf("Invalid value for field 'resource.sourceRanges[]': '%s'. Must be a CIDR address range that is contained in the network.", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	if v4 && v6 {
		return "Invalid value for field 'resource.sourceRanges': IPv4 and IPv6 ranges cannot be mixed in one firewall rule."
	}
	for _, a := range fw.Allowed {
		if m := checkPorts(a.GetIPProtocol(), a.Ports); m != "" {
			return m
		}
	}
	for _, d := range fw.Denied {
		if m := checkPorts(d.GetIPProtocol(), d.Ports); m != "" {
			return m
		}
	}
	return ""
}

func checkPorts(protocol string, ports []string) string {
	switch protocol {
	case "tcp", "udp", "sctp":
	case "all", "icmp", "esp", "ah", "ipip":
		if len(ports) > 0 {
			return "Invalid value for field 'resource.allowed[].ports': ports may only be given for tcp, udp and sctp"
		}
	default:
		return fmt.Sprintf("Invalid value for field 'resource.allowed[].IPProtocol': '%s'", protocol)
	}
	for _, p := range ports {
		if _, _, ok := portRange(p); !ok {
			return fmt.Sprintf("Invalid value for field 'resource.allowed[].ports[]': '%s'", p)
		}
	}
	return ""
}

func portRange(s string) (lo, hi int, ok bool) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil || lo < 0 || lo > 65535 {
		return 0, 0, false
	}
	if !isRange {
		return lo, lo, true
	}
	hi, err = strconv.Atoi(b)
	if err != nil || hi < lo || hi > 65535 {
		return 0, 0, false
	}
	return lo, hi, true
}

func decode(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = protojson.Unmarshal(b, m)
	}
	if err != nil {
		writeError(w, 400, "parseError", "Parse Error: "+err.Error())
		return false
	}
	return true
}

func (c *Compute) insertFirewall(w http.ResponseWriter, r *http.Request) {
	var fw computepb.Firewall
	if !decode(w, r, &fw) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := r.PathValue("project")
	if fw.Priority == nil {
		fw.Priority = proto.Int32(1000)
	}
	if msg := checkFirewall(&fw); msg != "" {
		writeError(w, 400, "invalid", msg)
		return
	}
	if c.firewalls[p+"/"+fw.GetName()] != nil {
		writeError(w, 409, "alreadyExists", "The resource 'projects/"+p+"/global/firewalls/"+fw.GetName()+"' already exists")
		return
	}
	if q, ok := c.quota[p]; ok {
		n := 0
		for k := range c.firewalls {
			if strings.HasPrefix(k, p+"/") {
				n++
			}
		}
		if n >= q {
			writeError(w, 403, "quotaExceeded", fmt.Sprintf("Quota 'FIREWALLS' exceeded.  Limit: %d.0 globally.", q))
			return
		}
	}
	if c.failedOperation(w, p, "", "insert", apiBase+"projects/"+p+"/global/firewalls/"+fw.GetName()) {
		return
	}
	c.fillFirewall(p, &fw)
	c.firewalls[p+"/"+fw.GetName()] = &fw
	writeJSON(w, c.operation(p, "", "insert", fw.GetSelfLink(), fw.GetId()))
}

func (c *Compute) patchFirewall(w http.ResponseWriter, r *http.Request) {
	var patch computepb.Firewall
	if !decode(w, r, &patch) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, n := r.PathValue("project"), r.PathValue("name")
	fw := c.firewalls[p+"/"+n]
	if fw == nil {
		notFound(w, "projects/"+p+"/global/firewalls/"+n)
		return
	}
	if patch.Name != nil && patch.GetName() != n {
		writeError(w, 400, "invalid", "Invalid value for field 'resource.name': the name of a firewall rule cannot be changed")
		return
	}
	if patch.Network != nil && c.networkURL(p, patch.GetNetwork()) != fw.GetNetwork() {
		writeError(w, 400, "invalid", "Invalid value for field 'resource.network': the network of a firewall rule cannot be changed")
		return
	}
	updated := proto.Clone(fw).(*computepb.Firewall)
	// A field present in the patch replaces the rule's, lists whole.
	patch.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		updated.ProtoReflect().Set(fd, v)
		return true
	})
	updated.Network = fw.Network
	if len(patch.Allowed) > 0 {
		updated.Denied = nil
	}
	if len(patch.Denied) > 0 {
		updated.Allowed = nil
	}
	if msg := checkFirewall(updated); msg != "" {
		writeError(w, 400, "invalid", msg)
		return
	}
	if c.failedOperation(w, p, "", "patch", fw.GetSelfLink()) {
		return
	}
	c.firewalls[p+"/"+n] = updated
	writeJSON(w, c.operation(p, "", "patch", fw.GetSelfLink(), fw.GetId()))
}

func (c *Compute) deleteFirewall(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, n := r.PathValue("project"), r.PathValue("name")
	fw := c.firewalls[p+"/"+n]
	if fw == nil {
		notFound(w, "projects/"+p+"/global/firewalls/"+n)
		return
	}
	if c.failedOperation(w, p, "", "delete", fw.GetSelfLink()) {
		return
	}
	delete(c.firewalls, p+"/"+n)
	writeJSON(w, c.operation(p, "", "delete", fw.GetSelfLink(), fw.GetId()))
}

// ---- what the firewall lets through ----

// Reachable reports whether a new connection from src to port/protocol
// ("TCP" or "UDP") reaches the instance through the VPC firewall rules of
// its first network interface's network, evaluated as Google Cloud does:
// enabled ingress rules that apply to the instance (by target tag, target
// service account, or all) and match the source, by priority (lower
// first), deny ahead of allow at equal priority, the implied deny last.
// A stopped or missing instance is reached by nothing.
func (c *Compute) Reachable(project, zone, name string, src netip.Addr, port int, protocol string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := c.instances[project+"/"+zone+"/"+name]
	if in == nil || in.GetStatus() != "RUNNING" || len(in.NetworkInterfaces) == 0 {
		return false
	}
	network := in.NetworkInterfaces[0].GetNetwork()
	protocol = strings.ToLower(protocol)
	type match struct {
		priority int32
		allow    bool
	}
	var matches []match
	for _, fw := range c.firewalls {
		if fw.GetNetwork() != network || fw.GetDirection() != "INGRESS" || fw.GetDisabled() || !appliesTo(fw, in) || !fromSource(fw, src) {
			continue
		}
		if covers(fw.Allowed, nil, port, protocol) {
			matches = append(matches, match{fw.GetPriority(), true})
		}
		if covers(nil, fw.Denied, port, protocol) {
			matches = append(matches, match{fw.GetPriority(), false})
		}
	}
	if len(matches) == 0 {
		return false
	}
	slices.SortFunc(matches, func(a, b match) int {
		if a.priority != b.priority {
			return cmp.Compare(a.priority, b.priority)
		}
		switch {
		case !a.allow && b.allow:
			return -1
		case a.allow && !b.allow:
			return 1
		}
		return 0
	})
	return matches[0].allow
}

func appliesTo(fw *computepb.Firewall, in *computepb.Instance) bool {
	if len(fw.TargetTags) == 0 && len(fw.TargetServiceAccounts) == 0 {
		return true
	}
	for _, t := range fw.TargetTags {
		if slices.Contains(in.GetTags().GetItems(), t) {
			return true
		}
	}
	for _, sa := range in.ServiceAccounts {
		if slices.Contains(fw.TargetServiceAccounts, sa.GetEmail()) {
			return true
		}
	}
	return false
}

func fromSource(fw *computepb.Firewall, src netip.Addr) bool {
	for _, s := range fw.SourceRanges {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, err := netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if p.IsValid() && p.Contains(src) {
			return true
		}
	}
	return false
}

func covers(allowed []*computepb.Allowed, denied []*computepb.Denied, port int, protocol string) bool {
	type entry struct {
		proto string
		ports []string
	}
	var es []entry
	for _, a := range allowed {
		es = append(es, entry{a.GetIPProtocol(), a.Ports})
	}
	for _, d := range denied {
		es = append(es, entry{d.GetIPProtocol(), d.Ports})
	}
	for _, e := range es {
		if e.proto != "all" && e.proto != protocol {
			continue
		}
		if len(e.ports) == 0 {
			return true
		}
		for _, p := range e.ports {
			if lo, hi, ok := portRange(p); ok && lo <= port && port <= hi {
				return true
			}
		}
	}
	return false
}
