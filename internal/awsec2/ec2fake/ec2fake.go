// Package ec2fake is an in-memory Amazon EC2 that speaks the EC2 Query
// API on a loopback httptest server: form-encoded requests (Action=...,
// Filter.1.Name=...), XML answers with <item> lists, error XML with AWS's
// codes, and NextToken paging. The real aws-sdk-go-v2 EC2 client talks to
// it (its signing, paging, retries and error decoding run for real); the
// region of each request is the one its SigV4 signature names.
//
// It implements the actions ajar's AWS backend uses: DescribeInstances,
// DescribeSecurityGroups, DescribeNetworkInterfaces, CreateSecurityGroup,
// DeleteSecurityGroup, AuthorizeSecurityGroupIngress,
// RevokeSecurityGroupIngress, RevokeSecurityGroupEgress,
// ModifyNetworkInterfaceAttribute, CreateTags and DeleteTags; any other
// action answers InvalidAction. Faults are injected per action (Fail,
// Refuse), rule limits are set with SetRuleLimit, and eventual consistency
// of new security groups with SetLag. Reachable evaluates the security
// groups of an instance's primary network interface as EC2 does.
package ec2fake

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Account is the account id of everything in the fake.
const Account = "123456789012"

// Rule is one ingress or egress rule: a protocol ("tcp", "udp", "-1"),
// a port range (-1 for all protocols) and one source CIDR.
type Rule struct {
	Proto       string
	From, To    int
	CIDR        string // IPv4 or IPv6
	Description string
}

// Group is a security group.
type Group struct {
	ID, Name, Description, VPC, Region string
	Tags                               map[string]string
	Ingress, Egress                    []Rule
}

// ENI is a network interface.
type ENI struct {
	ID, Instance string // Instance "" when detached
	DeviceIndex  int
	PrivateIP    string
	PublicIP     string
	IPv6         []string
	Groups       []string
	VPC, Subnet  string
	Region       string
}

// Instance is an EC2 instance.
type Instance struct {
	ID, Region, State, Platform string // State: running, stopped, ...; Platform "windows" or ""
	VPC, Subnet                 string
	Tags                        map[string]string
	ENIs                        []string // by device index
}

// InstanceSpec describes an instance for AddInstance.
type InstanceSpec struct {
	Region     string // default "eu-west-1"
	Name       string // the Name tag
	Tags       map[string]string
	State      string // default running
	Platform   string
	VPC        string // default vpc-1
	PrivateIP  string
	PublicIP   string
	IPv6       []string
	Groups     []string // security group ids of the primary ENI
	NoENI      bool
	ExtraENIGs []string // a second ENI with these groups, when set
}

type fault struct {
	code  string
	times int // <0: always
}

// EC2 is the fake. Create it with New.
type EC2 struct {
	srv *httptest.Server

	mu        sync.Mutex
	instances map[string]*Instance
	groups    map[string]*Group
	enis      map[string]*ENI
	next      int
	faults    map[string]*fault // by action
	ruleLimit int
	pageSize  int
	lag       int            // requests for which a new group stays invisible
	young     map[string]int // group id -> requests still blind to it
	calls     map[string]int
}

// New starts a fake and stops it when t ends.
func New(t testing.TB) *EC2 {
	f := &EC2{instances: map[string]*Instance{}, groups: map[string]*Group{}, enis: map[string]*ENI{},
		faults: map[string]*fault{}, ruleLimit: 60, pageSize: 2, young: map[string]int{}, calls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the endpoint to give the SDK (BaseEndpoint).
func (f *EC2) URL() string { return f.srv.URL }

func (f *EC2) id(prefix string) string {
	f.next++
	return fmt.Sprintf("%s-%017x", prefix, f.next)
}

// AddGroup creates a security group in region and vpc with ingress
// rules and returns its id. Its egress allows everything, as EC2's default.
func (f *EC2) AddGroup(region, vpc, name string, ingress ...Rule) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := &Group{ID: f.id("sg"), Name: name, Description: name, VPC: vpc, Region: region, Tags: map[string]string{},
		Ingress: ingress, Egress: []Rule{{Proto: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"}}}
	f.groups[g.ID] = g
	return g.ID
}

// AddInstance creates an instance and returns its id.
func (f *EC2) AddInstance(s InstanceSpec) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Region == "" {
		s.Region = "eu-west-1"
	}
	if s.State == "" {
		s.State = "running"
	}
	if s.VPC == "" {
		s.VPC = "vpc-1"
	}
	in := &Instance{ID: f.id("i"), Region: s.Region, State: s.State, Platform: s.Platform, VPC: s.VPC, Subnet: "subnet-1", Tags: map[string]string{}}
	for k, v := range s.Tags {
		in.Tags[k] = v
	}
	if s.Name != "" {
		in.Tags["Name"] = s.Name
	}
	if !s.NoENI {
		e := &ENI{ID: f.id("eni"), Instance: in.ID, PrivateIP: s.PrivateIP, PublicIP: s.PublicIP, IPv6: s.IPv6,
			Groups: slices.Clone(s.Groups), VPC: s.VPC, Subnet: in.Subnet, Region: s.Region}
		f.enis[e.ID] = e
		in.ENIs = append(in.ENIs, e.ID)
		if s.ExtraENIGs != nil {
			e2 := &ENI{ID: f.id("eni"), Instance: in.ID, DeviceIndex: 1, Groups: slices.Clone(s.ExtraENIGs), VPC: s.VPC, Subnet: in.Subnet, Region: s.Region}
			f.enis[e2.ID] = e2
			in.ENIs = append(in.ENIs, e2.ID)
		}
	}
	f.instances[in.ID] = in
	return in.ID
}

// TerminateInstance deletes an instance and its network interfaces.
func (f *EC2) TerminateInstance(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in := f.instances[id]; in != nil {
		for _, e := range in.ENIs {
			delete(f.enis, e)
		}
	}
	delete(f.instances, id)
}

// SetState sets an instance's state (running, stopped, ...).
func (f *EC2) SetState(id, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[id].State = state
}

// Group returns a copy of the security group id.
func (f *EC2) Group(id string) (Group, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.groups[id]
	if !ok {
		return Group{}, false
	}
	c := *g
	c.Tags = map[string]string{}
	for k, v := range g.Tags {
		c.Tags[k] = v
	}
	c.Ingress, c.Egress = slices.Clone(g.Ingress), slices.Clone(g.Egress)
	return c, true
}

// Groups returns the ids of every security group whose tag key is value.
func (f *EC2) Groups(key, value string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, g := range f.groups {
		if v, ok := g.Tags[key]; ok && v == value {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// PrimaryGroups returns the security groups of an instance's primary ENI.
func (f *EC2) PrimaryGroups(instance string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.instances[instance]
	if in == nil || len(in.ENIs) == 0 {
		return nil
	}
	return slices.Clone(f.enis[in.ENIs[0]].Groups)
}

// Fail makes the next times calls of action answer the error code
// (times < 0: every call).
func (f *EC2) Fail(action, code string, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[action] = &fault{code: code, times: times}
}

// Refuse makes every call of action answer UnauthorizedOperation.
func (f *EC2) Refuse(action string) { f.Fail(action, "UnauthorizedOperation", -1) }

// Heal removes the faults of action.
func (f *EC2) Heal(action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, action)
}

// SetRuleLimit sets how many inbound rules a security group may hold
// (EC2's default: 60).
func (f *EC2) SetRuleLimit(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ruleLimit = n
}

// SetPageSize sets how many items a Describe page holds.
func (f *EC2) SetPageSize(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pageSize = n
}

// SetLag makes each security group created from now on unknown
// (InvalidGroup.NotFound) to the next n requests that name it by id.
func (f *EC2) SetLag(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lag = n
}

// Calls returns how many requests of action the fake answered.
func (f *EC2) Calls(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

// Reachable reports whether a new connection from src to port/proto
// ("TCP", "UDP") reaches the instance through the security groups of its
// primary network interface: some ingress rule of one of them allows it.
func (f *EC2) Reachable(t testing.TB, instance string, src netip.Addr, port int, proto string) bool {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.instances[instance]
	if in == nil || len(in.ENIs) == 0 {
		t.Fatalf("ec2fake: no instance %s with a network interface", instance)
	}
	proto = strings.ToLower(proto)
	for _, gid := range f.enis[in.ENIs[0]].Groups {
		for _, r := range f.groups[gid].Ingress {
			if (r.Proto == "-1" || r.Proto == proto) && (r.Proto == "-1" || (port >= r.From && port <= r.To)) {
				if p, err := netip.ParsePrefix(r.CIDR); err == nil && p.Contains(src) {
					return true
				}
			}
		}
	}
	return false
}

// ---- the wire ----

// apiError is an EC2 error answer.
type apiError struct {
	status        int
	code, message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(code, format string, args ...any) *apiError {
	status := http.StatusBadRequest
	switch code {
	case "RequestLimitExceeded":
		status = http.StatusServiceUnavailable
	case "UnauthorizedOperation", "AuthFailure":
		status = http.StatusForbidden
	}
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

var credentialRE = regexp.MustCompile(`Credential=[^/]+/\d{8}/([^/]+)/ec2/aws4_request`)

func (f *EC2) serve(w http.ResponseWriter, r *http.Request) {
	m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if r.Method != http.MethodPost || m == nil {
		writeError(w, errf("AuthFailure", "the request is not a SigV4-signed POST for ec2"))
		return
	}
	region := m[1]
	if err := r.ParseForm(); err != nil {
		writeError(w, errf("MalformedQueryString", "%v", err))
		return
	}
	q := params(r.PostForm)
	action := q.get("Action")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[action]++
	if ft := f.faults[action]; ft != nil && ft.times != 0 {
		if ft.times > 0 {
			ft.times--
		}
		writeError(w, errf(ft.code, "injected fault for %s", action))
		return
	}
	var body any
	var err *apiError
	switch action {
	case "DescribeInstances":
		body, err = f.describeInstances(region, q)
	case "DescribeSecurityGroups":
		body, err = f.describeSecurityGroups(region, q)
	case "DescribeNetworkInterfaces":
		body, err = f.describeNetworkInterfaces(region, q)
	case "CreateSecurityGroup":
		body, err = f.createSecurityGroup(region, q)
	case "DeleteSecurityGroup":
		body, err = f.deleteSecurityGroup(region, q)
	case "AuthorizeSecurityGroupIngress":
		body, err = f.authorize(region, q)
	case "RevokeSecurityGroupIngress":
		body, err = f.revoke(region, q, false)
	case "RevokeSecurityGroupEgress":
		body, err = f.revoke(region, q, true)
	case "ModifyNetworkInterfaceAttribute":
		body, err = f.modifyENI(region, q)
	case "CreateTags":
		body, err = f.tags(region, q, true)
	case "DeleteTags":
		body, err = f.tags(region, q, false)
	default:
		err = errf("InvalidAction", "the action %s is not valid for this web service", action)
	}
	for id, n := range f.young {
		if n <= 1 {
			delete(f.young, id)
		} else {
			f.young[id] = n - 1
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	out, merr := xml.Marshal(body)
	if merr != nil {
		writeError(w, errf("InternalError", "%v", merr))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Write([]byte(xml.Header))
	w.Write(out)
}

func writeError(w http.ResponseWriter, e *apiError) {
	type xmlErr struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"Response"`
		Errors    []xmlErr `xml:"Errors>Error"`
		RequestID string   `xml:"RequestID"`
	}
	out, _ := xml.Marshal(resp{Errors: []xmlErr{{e.code, e.message}}, RequestID: "req-fake"})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	w.Write(out)
}

// params is a form as a tree: "Filter.1.Value.2" is q.list("Filter")[0].list("Value")[1].
type params map[string][]string

func (q params) get(k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// sub returns the parameters under prefix "k.".
func (q params) sub(k string) params {
	out := params{}
	for key, v := range q {
		if rest, ok := strings.CutPrefix(key, k+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// list returns the numbered members k.1, k.2, ... as sub-trees.
func (q params) list(k string) []params {
	var out []params
	for i := 1; ; i++ {
		s := q.sub(k + "." + strconv.Itoa(i))
		if len(s) == 0 {
			if v, ok := q[k+"."+strconv.Itoa(i)]; ok {
				out = append(out, params{"": v})
				continue
			}
			return out
		}
		out = append(out, s)
	}
}

// values returns the scalar members k.1, k.2, ...
func (q params) values(k string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := q[k+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// filters returns the request's filters: name -> values.
func (q params) filters() map[string][]string {
	out := map[string][]string{}
	for _, f := range q.list("Filter") {
		out[f.get("Name")] = f.values("Value")
	}
	return out
}

// matchTags checks the tag:K and tag-key filters against tags.
func matchTags(fs map[string][]string, tags map[string]string) bool {
	for name, vals := range fs {
		if k, ok := strings.CutPrefix(name, "tag:"); ok {
			if v, has := tags[k]; !has || !slices.Contains(vals, v) {
				return false
			}
		}
		if name == "tag-key" && !slices.ContainsFunc(vals, func(k string) bool { _, ok := tags[k]; return ok }) {
			return false
		}
	}
	return true
}

func matchOne(fs map[string][]string, name, v string) bool {
	vals, ok := fs[name]
	return !ok || slices.Contains(vals, v)
}

// page cuts ids (sorted) at NextToken into one page and the next token.
func (f *EC2) page(q params, ids []string) ([]string, string, *apiError) {
	sort.Strings(ids)
	start := 0
	if tok := q.get("NextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(ids) {
			return nil, "", errf("InvalidParameterValue", "invalid NextToken %q", tok)
		}
		start = n
	}
	size := f.pageSize
	if mr := q.get("MaxResults"); mr != "" {
		if n, err := strconv.Atoi(mr); err == nil && n < size {
			size = n
		}
	}
	end := min(len(ids), start+size)
	next := ""
	if end < len(ids) {
		next = strconv.Itoa(end)
	}
	return ids[start:end], next, nil
}

// ---- XML shapes ----

type item struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type groupRef struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

type xmlENI struct {
	NetworkInterfaceID string     `xml:"networkInterfaceId"`
	SubnetID           string     `xml:"subnetId"`
	VpcID              string     `xml:"vpcId"`
	PrivateIPAddress   string     `xml:"privateIpAddress,omitempty"`
	Attachment         *xmlAttach `xml:"attachment,omitempty"`
	Groups             []groupRef `xml:"groupSet>item"`
	IPv6               []struct {
		Address string `xml:"ipv6Address"`
	} `xml:"ipv6AddressesSet>item"`
	Association *struct {
		PublicIP string `xml:"publicIp"`
	} `xml:"association,omitempty"`
	Status string `xml:"status"`
}

type xmlAttach struct {
	AttachmentID string `xml:"attachmentId"`
	DeviceIndex  int    `xml:"deviceIndex"`
	InstanceID   string `xml:"instanceId,omitempty"`
	Status       string `xml:"status"`
}

type xmlInstance struct {
	InstanceID    string `xml:"instanceId"`
	InstanceState struct {
		Code int    `xml:"code"`
		Name string `xml:"name"`
	} `xml:"instanceState"`
	Platform         string     `xml:"platform,omitempty"`
	PlatformDetails  string     `xml:"platformDetails"`
	PrivateIPAddress string     `xml:"privateIpAddress,omitempty"`
	IPAddress        string     `xml:"ipAddress,omitempty"`
	VpcID            string     `xml:"vpcId"`
	SubnetID         string     `xml:"subnetId"`
	Tags             []item     `xml:"tagSet>item"`
	Groups           []groupRef `xml:"groupSet>item"`
	ENIs             []xmlENI   `xml:"networkInterfaceSet>item"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

func (f *EC2) groupRefs(ids []string) []groupRef {
	out := []groupRef{}
	for _, id := range ids {
		if g := f.groups[id]; g != nil {
			out = append(out, groupRef{id, g.Name})
		}
	}
	return out
}

func (f *EC2) xmlENI(e *ENI) xmlENI {
	x := xmlENI{NetworkInterfaceID: e.ID, SubnetID: e.Subnet, VpcID: e.VPC, PrivateIPAddress: e.PrivateIP, Groups: f.groupRefs(e.Groups), Status: "available"}
	if e.Instance != "" {
		x.Attachment = &xmlAttach{AttachmentID: "attach-" + e.ID, DeviceIndex: e.DeviceIndex, InstanceID: e.Instance, Status: "attached"}
		x.Status = "in-use"
	}
	for _, a := range e.IPv6 {
		x.IPv6 = append(x.IPv6, struct {
			Address string `xml:"ipv6Address"`
		}{a})
	}
	if e.PublicIP != "" {
		x.Association = &struct {
			PublicIP string `xml:"publicIp"`
		}{e.PublicIP}
	}
	return x
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

func (f *EC2) describeInstances(region string, q params) (any, *apiError) {
	fs := q.filters()
	want := q.values("InstanceId")
	var ids []string
	for id, in := range f.instances {
		if in.Region != region || (len(want) > 0 && !slices.Contains(want, id)) {
			continue
		}
		if !matchOne(fs, "instance-state-name", in.State) || !matchOne(fs, "vpc-id", in.VPC) || !matchOne(fs, "instance-id", id) || !matchTags(fs, in.Tags) {
			continue
		}
		ids = append(ids, id)
	}
	for _, id := range want {
		if in := f.instances[id]; in == nil || in.Region != region {
			return nil, errf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	page, next, err := f.page(q, ids)
	if err != nil {
		return nil, err
	}
	type resp struct {
		XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
		RequestID    string           `xml:"requestId"`
		Reservations []xmlReservation `xml:"reservationSet>item"`
		NextToken    string           `xml:"nextToken,omitempty"`
	}
	out := resp{RequestID: "req", NextToken: next, Reservations: []xmlReservation{}}
	for _, id := range page {
		in := f.instances[id]
		x := xmlInstance{InstanceID: in.ID, Platform: in.Platform, PlatformDetails: "Linux/UNIX", VpcID: in.VPC, SubnetID: in.Subnet}
		if in.Platform == "windows" {
			x.PlatformDetails = "Windows"
		}
		x.InstanceState.Name, x.InstanceState.Code = in.State, stateCodes[in.State]
		for _, k := range sortedKeys(in.Tags) {
			x.Tags = append(x.Tags, item{k, in.Tags[k]})
		}
		for i, eid := range in.ENIs {
			e := f.enis[eid]
			x.ENIs = append(x.ENIs, f.xmlENI(e))
			if i == 0 {
				x.PrivateIPAddress, x.IPAddress = e.PrivateIP, e.PublicIP
				x.Groups = f.groupRefs(e.Groups)
			}
		}
		out.Reservations = append(out.Reservations, xmlReservation{ReservationID: "r-" + id, OwnerID: Account, Instances: []xmlInstance{x}})
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

type xmlRange struct {
	CidrIP      string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type xmlRange6 struct {
	CidrIPv6    string `xml:"cidrIpv6"`
	Description string `xml:"description,omitempty"`
}

type xmlPerm struct {
	IPProtocol string      `xml:"ipProtocol"`
	FromPort   *int        `xml:"fromPort,omitempty"`
	ToPort     *int        `xml:"toPort,omitempty"`
	IPRanges   []xmlRange  `xml:"ipRanges>item"`
	IPv6Ranges []xmlRange6 `xml:"ipv6Ranges>item"`
}

type xmlGroup struct {
	OwnerID     string    `xml:"ownerId"`
	GroupID     string    `xml:"groupId"`
	GroupName   string    `xml:"groupName"`
	Description string    `xml:"groupDescription"`
	VpcID       string    `xml:"vpcId"`
	Ingress     []xmlPerm `xml:"ipPermissions>item"`
	Egress      []xmlPerm `xml:"ipPermissionsEgress>item"`
	Tags        []item    `xml:"tagSet>item"`
}

// perms groups rules by protocol and ports, as EC2 answers them.
func perms(rules []Rule) []xmlPerm {
	var out []xmlPerm
	idx := map[string]int{}
	for _, r := range rules {
		key := fmt.Sprintf("%s/%d/%d", r.Proto, r.From, r.To)
		i, ok := idx[key]
		if !ok {
			p := xmlPerm{IPProtocol: r.Proto}
			if r.Proto != "-1" {
				from, to := r.From, r.To
				p.FromPort, p.ToPort = &from, &to
			}
			out = append(out, p)
			i = len(out) - 1
			idx[key] = i
		}
		if strings.Contains(r.CIDR, ":") {
			out[i].IPv6Ranges = append(out[i].IPv6Ranges, xmlRange6{r.CIDR, r.Description})
		} else {
			out[i].IPRanges = append(out[i].IPRanges, xmlRange{r.CIDR, r.Description})
		}
	}
	return out
}

// lookupGroup finds a group by id in region, as a request sees it.
func (f *EC2) lookupGroup(region, id string) (*Group, *apiError) {
	g := f.groups[id]
	if g == nil || g.Region != region || f.young[id] > 0 {
		return nil, errf("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return g, nil
}

func (f *EC2) describeSecurityGroups(region string, q params) (any, *apiError) {
	fs := q.filters()
	want := q.values("GroupId")
	for _, id := range want {
		if _, err := f.lookupGroup(region, id); err != nil {
			return nil, err
		}
	}
	var ids []string
	for id, g := range f.groups {
		if g.Region != region || f.young[id] > 0 || (len(want) > 0 && !slices.Contains(want, id)) {
			continue
		}
		if !matchOne(fs, "group-id", id) || !matchOne(fs, "vpc-id", g.VPC) || !matchOne(fs, "group-name", g.Name) || !matchTags(fs, g.Tags) {
			continue
		}
		ids = append(ids, id)
	}
	page, next, err := f.page(q, ids)
	if err != nil {
		return nil, err
	}
	type resp struct {
		XMLName   xml.Name   `xml:"DescribeSecurityGroupsResponse"`
		RequestID string     `xml:"requestId"`
		Groups    []xmlGroup `xml:"securityGroupInfo>item"`
		NextToken string     `xml:"nextToken,omitempty"`
	}
	out := resp{RequestID: "req", NextToken: next, Groups: []xmlGroup{}}
	for _, id := range page {
		g := f.groups[id]
		x := xmlGroup{OwnerID: Account, GroupID: g.ID, GroupName: g.Name, Description: g.Description, VpcID: g.VPC, Ingress: perms(g.Ingress), Egress: perms(g.Egress)}
		for _, k := range sortedKeys(g.Tags) {
			x.Tags = append(x.Tags, item{k, g.Tags[k]})
		}
		out.Groups = append(out.Groups, x)
	}
	return out, nil
}

func (f *EC2) describeNetworkInterfaces(region string, q params) (any, *apiError) {
	fs := q.filters()
	var ids []string
	for id, e := range f.enis {
		if e.Region != region {
			continue
		}
		if !matchOne(fs, "attachment.instance-id", e.Instance) || !matchOne(fs, "network-interface-id", id) {
			continue
		}
		if vals, ok := fs["group-id"]; ok && !slices.ContainsFunc(e.Groups, func(g string) bool { return slices.Contains(vals, g) }) {
			continue
		}
		ids = append(ids, id)
	}
	page, next, err := f.page(q, ids)
	if err != nil {
		return nil, err
	}
	type resp struct {
		XMLName   xml.Name `xml:"DescribeNetworkInterfacesResponse"`
		RequestID string   `xml:"requestId"`
		ENIs      []xmlENI `xml:"networkInterfaceSet>item"`
		NextToken string   `xml:"nextToken,omitempty"`
	}
	out := resp{RequestID: "req", NextToken: next, ENIs: []xmlENI{}}
	for _, id := range page {
		out.ENIs = append(out.ENIs, f.xmlENI(f.enis[id]))
	}
	return out, nil
}

type okResp struct {
	XMLName   xml.Name
	RequestID string `xml:"requestId"`
	Return    bool   `xml:"return"`
}

func ok(action string) okResp {
	return okResp{XMLName: xml.Name{Local: action + "Response"}, RequestID: "req", Return: true}
}

func (f *EC2) createSecurityGroup(region string, q params) (any, *apiError) {
	name, vpc := q.get("GroupName"), q.get("VpcId")
	if name == "" || q.get("GroupDescription") == "" {
		return nil, errf("MissingParameter", "GroupName and GroupDescription are required")
	}
	for _, g := range f.groups {
		if g.Region == region && g.VPC == vpc && g.Name == name {
			return nil, errf("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpc)
		}
	}
	g := &Group{ID: f.id("sg"), Name: name, Description: q.get("GroupDescription"), VPC: vpc, Region: region, Tags: map[string]string{},
		Egress: []Rule{{Proto: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"}}}
	for _, ts := range q.list("TagSpecification") {
		if ts.get("ResourceType") != "security-group" {
			return nil, errf("InvalidParameterValue", "tag specification for %q", ts.get("ResourceType"))
		}
		for _, t := range ts.list("Tag") {
			g.Tags[t.get("Key")] = t.get("Value")
		}
	}
	f.groups[g.ID] = g
	if f.lag > 0 {
		f.young[g.ID] = f.lag + 1 // this request counts down once too
	}
	type resp struct {
		XMLName   xml.Name `xml:"CreateSecurityGroupResponse"`
		RequestID string   `xml:"requestId"`
		Return    bool     `xml:"return"`
		GroupID   string   `xml:"groupId"`
	}
	return resp{RequestID: "req", Return: true, GroupID: g.ID}, nil
}

func (f *EC2) deleteSecurityGroup(region string, q params) (any, *apiError) {
	g, err := f.lookupGroup(region, q.get("GroupId"))
	if err != nil {
		return nil, err
	}
	for _, e := range f.enis {
		if slices.Contains(e.Groups, g.ID) {
			return nil, errf("DependencyViolation", "resource %s has a dependent object", g.ID)
		}
	}
	delete(f.groups, g.ID)
	return ok("DeleteSecurityGroup"), nil
}

// requestRules reads IpPermissions.N into rules.
func requestRules(q params) ([]Rule, *apiError) {
	var out []Rule
	for _, p := range q.list("IpPermissions") {
		proto := strings.ToLower(p.get("IpProtocol"))
		switch proto {
		case "tcp", "udp", "-1", "icmp", "icmpv6":
		case "6":
			proto = "tcp"
		case "17":
			proto = "udp"
		default:
			return nil, errf("InvalidPermission.Malformed", "unknown protocol %q", proto)
		}
		from, to := -1, -1
		if proto != "-1" {
			var e1, e2 error
			from, e1 = strconv.Atoi(p.get("FromPort"))
			to, e2 = strconv.Atoi(p.get("ToPort"))
			if e1 != nil || e2 != nil || from > to || from < -1 || to > 65535 {
				return nil, errf("InvalidParameterValue", "invalid port range %q-%q", p.get("FromPort"), p.get("ToPort"))
			}
		}
		n := 0
		for _, r := range p.list("IpRanges") {
			pf, err := netip.ParsePrefix(r.get("CidrIp"))
			if err != nil || !pf.Addr().Is4() || pf.Masked() != pf {
				return nil, errf("InvalidParameterValue", "CIDR block %s is malformed", r.get("CidrIp"))
			}
			out = append(out, Rule{Proto: proto, From: from, To: to, CIDR: pf.String(), Description: r.get("Description")})
			n++
		}
		for _, r := range p.list("Ipv6Ranges") {
			pf, err := netip.ParsePrefix(r.get("CidrIpv6"))
			if err != nil || !pf.Addr().Is6() || pf.Masked() != pf {
				return nil, errf("InvalidParameterValue", "CIDR block %s is malformed", r.get("CidrIpv6"))
			}
			out = append(out, Rule{Proto: proto, From: from, To: to, CIDR: pf.String(), Description: r.get("Description")})
			n++
		}
		if n == 0 {
			return nil, errf("InvalidParameterValue", "a permission needs a source")
		}
	}
	if len(out) == 0 {
		return nil, errf("MissingParameter", "IpPermissions are required")
	}
	return out, nil
}

func sameRule(a, b Rule) bool {
	return a.Proto == b.Proto && a.From == b.From && a.To == b.To && a.CIDR == b.CIDR
}

func (f *EC2) authorize(region string, q params) (any, *apiError) {
	g, err := f.lookupGroup(region, q.get("GroupId"))
	if err != nil {
		return nil, err
	}
	rules, err := requestRules(q)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if slices.ContainsFunc(g.Ingress, func(o Rule) bool { return sameRule(o, r) }) {
			return nil, errf("InvalidPermission.Duplicate", "the specified rule \"peer: %s, %s, from port: %d, to port: %d, ALLOW\" already exists", r.CIDR, strings.ToUpper(r.Proto), r.From, r.To)
		}
	}
	if len(g.Ingress)+len(rules) > f.ruleLimit {
		return nil, errf("RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached.")
	}
	g.Ingress = append(g.Ingress, rules...)
	return ok("AuthorizeSecurityGroupIngress"), nil
}

func (f *EC2) revoke(region string, q params, egress bool) (any, *apiError) {
	g, err := f.lookupGroup(region, q.get("GroupId"))
	if err != nil {
		return nil, err
	}
	rules, err := requestRules(q)
	if err != nil {
		return nil, err
	}
	list := &g.Ingress
	action := "RevokeSecurityGroupIngress"
	if egress {
		list, action = &g.Egress, "RevokeSecurityGroupEgress"
	}
	for _, r := range rules {
		i := slices.IndexFunc(*list, func(o Rule) bool { return sameRule(o, r) })
		if i < 0 {
			return nil, errf("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
		}
		*list = slices.Delete(*list, i, i+1)
	}
	return ok(action), nil
}

func (f *EC2) modifyENI(region string, q params) (any, *apiError) {
	e := f.enis[q.get("NetworkInterfaceId")]
	if e == nil || e.Region != region {
		return nil, errf("InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", q.get("NetworkInterfaceId"))
	}
	groups := q.values("SecurityGroupId")
	if len(groups) == 0 {
		return nil, errf("MissingParameter", "SecurityGroupId is required")
	}
	if len(groups) > 5 {
		return nil, errf("SecurityGroupsPerInterfaceLimitExceeded", "The maximum number of security groups per interface has been reached.")
	}
	for _, id := range groups {
		g, err := f.lookupGroup(region, id)
		if err != nil {
			return nil, err
		}
		if g.VPC != e.VPC {
			return nil, errf("InvalidParameterValue", "security group %s is not in VPC %s", id, e.VPC)
		}
	}
	e.Groups = groups
	return ok("ModifyNetworkInterfaceAttribute"), nil
}

func (f *EC2) tags(region string, q params, create bool) (any, *apiError) {
	ids := q.values("ResourceId")
	if len(ids) == 0 {
		return nil, errf("MissingParameter", "ResourceId is required")
	}
	for _, id := range ids {
		var tags map[string]string
		switch {
		case strings.HasPrefix(id, "sg-"):
			g, err := f.lookupGroup(region, id)
			if err != nil {
				return nil, err
			}
			tags = g.Tags
		case strings.HasPrefix(id, "i-") && f.instances[id] != nil:
			tags = f.instances[id].Tags
		default:
			return nil, errf("InvalidID", "The ID '%s' is not valid", id)
		}
		for _, t := range q.list("Tag") {
			if create {
				if len(tags) >= 50 {
					return nil, errf("TagLimitExceeded", "The maximum number of tags for resource %s has been reached", id)
				}
				if len(t.get("Value")) > 256 || len(t.get("Key")) > 128 {
					return nil, errf("InvalidParameterValue", "tag too long")
				}
				tags[t.get("Key")] = t.get("Value")
			} else {
				delete(tags, t.get("Key"))
			}
		}
	}
	if create {
		return ok("CreateTags"), nil
	}
	return ok("DeleteTags"), nil
}
