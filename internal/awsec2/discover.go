package awsec2

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajarhq/ajar/internal/jit"
)

// Labels Discover puts on the VMs it finds.
const (
	LabelRegion         = "aws.region"
	LabelAccount        = "aws.account"
	LabelInstanceID     = "aws.instance-id"
	LabelVPC            = "aws.vpc"
	LabelENI            = "aws.eni"             // the primary network interface
	LabelSecurityGroups = "aws.security-groups" // of the primary network interface, comma-separated
	LabelState          = "aws.state"           // running, stopped, ...
	LabelName           = "aws.name"            // the Name tag
)

// TagGroup is the instance tag that names the ajar group of an instance;
// without it the group is the instance's VPC id.
const TagGroup = "ajar:group"

// Reasons an instance is not enforceable.
const (
	ReasonNoENI     = "instance has no network interface ajar may change"
	ReasonRuleLimit = "ajar's security group for the instance holds as many inbound rules as AWS allows (RulesPerSecurityGroupLimitExceeded): fewer grants at once, or raise the quota"
)

// ManagementPorts are the TCP ports whose exposure to the internet makes
// an instance unhealthy (JIT recommended).
var ManagementPorts = jit.ManagementPorts

// ref is an instance named by its ARN
// (arn:aws:ec2:REGION:ACCOUNT:instance/ID), ajar's external id.
type ref struct{ region, account, id string }

func (r ref) arn() string {
	return fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", r.region, r.account, r.id)
}

var arnRE = regexp.MustCompile(`^arn:aws[a-z-]*:ec2:([a-z0-9-]+):(\d{12}):instance/(i-[0-9a-f]+)$`)

func parseARN(s string) (ref, error) {
	m := arnRE.FindStringSubmatch(s)
	if m == nil {
		return ref{}, jit.Invalid("externalId", "%q is not the ARN of an EC2 instance (arn:aws:ec2:REGION:ACCOUNT:instance/i-...)", s)
	}
	return ref{region: m[1], account: m[2], id: m[3]}, nil
}

// ParseFilters parses --aws-filters: comma-separated NAME=VALUE items
// (tag:env=prod, vpc-id=vpc-0123, instance-state-name=running, ...),
// the values of a repeated name or-ed together, as EC2 filters.
func ParseFilters(s string) ([]types.Filter, error) {
	var out []types.Filter
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		if !ok || name == "" || value == "" {
			return nil, fmt.Errorf("--aws-filters: %q is not NAME=VALUE (such as tag:env=prod or vpc-id=vpc-0123)", item)
		}
		i := slices.IndexFunc(out, func(f types.Filter) bool { return aws.ToString(f.Name) == name })
		if i < 0 {
			out = append(out, types.Filter{Name: aws.String(name)})
			i = len(out) - 1
		}
		out[i].Values = append(out[i].Values, value)
	}
	return out, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Discover lists the instances of region that match filters (terminated
// ones left out). Per instance it reads the network interfaces and their
// addresses, the state, the platform and the security groups of the
// primary interface. An instance ajar cannot enforce on (stopped, no
// network interface, a read refused) comes back with Report.Enforceable
// false and the reason; Report.Exposed lists the management ports a
// security group on it opens to 0.0.0.0/0 or ::/0. An error means the
// listing itself failed (jit.EForbidden when refused).
func (c *Client) Discover(ctx context.Context, region string, filters []types.Filter) ([]jit.Discovered, error) {
	cl := c.ec2(region)
	var insts []instance
	p := ec2.NewDescribeInstancesPaginator(cl, &ec2.DescribeInstancesInput{Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, callError(err, "describe the instances of region "+region)
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				if s := in.State; s != nil && (s.Name == types.InstanceStateNameTerminated || s.Name == types.InstanceStateNameShuttingDown) {
					continue
				}
				insts = append(insts, instance{ref: ref{region: region, account: aws.ToString(res.OwnerId), id: aws.ToString(in.InstanceId)}, in: in})
			}
		}
	}
	// The security groups of every primary interface, read once.
	var ids []string
	for _, in := range insts {
		if eni := in.primary(); eni != nil {
			for _, g := range eni.Groups {
				if id := aws.ToString(g.GroupId); !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	groups, gerr := c.groups(ctx, region, ids)
	if gerr != nil && jit.ErrorCode(gerr) != jit.EForbidden && jit.ErrorCode(gerr) != jit.ENotFound {
		return nil, gerr
	}

	out := make([]jit.Discovered, 0, len(insts))
	names := map[string]int{} // group/name -> instances
	for _, in := range insts {
		d := c.discovered(in, groups, gerr)
		names[d.VM.Group+"/"+d.VM.Name]++
		out = append(out, d)
	}
	for i := range out {
		// Two instances with one Name tag in one group: both go by their ids.
		if names[out[i].VM.Group+"/"+out[i].VM.Name] > 1 {
			out[i].VM.Name = out[i].VM.Labels[LabelInstanceID]
		}
	}
	slices.SortFunc(out, func(a, b jit.Discovered) int {
		return cmp.Or(cmp.Compare(a.VM.Group, b.VM.Group), cmp.Compare(a.VM.Name, b.VM.Name))
	})
	return out, nil
}

// instance is one instance as DescribeInstances answered it.
type instance struct {
	ref ref
	in  types.Instance
}

// primary returns the instance's primary network interface (device index
// 0), nil when it has none.
func (i instance) primary() *types.InstanceNetworkInterface {
	for k, e := range i.in.NetworkInterfaces {
		if e.Attachment != nil && aws.ToInt32(e.Attachment.DeviceIndex) == 0 {
			return &i.in.NetworkInterfaces[k]
		}
	}
	return nil
}

func tag(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

func (c *Client) discovered(i instance, groups map[string]types.SecurityGroup, gerr error) jit.Discovered {
	in := i.in
	state := ""
	if in.State != nil {
		state = string(in.State.Name)
	}
	osName := "linux"
	if strings.EqualFold(string(in.Platform), "windows") {
		osName = "windows"
	}
	name := tag(in.Tags, "Name")
	vmName := name
	if !nameRE.MatchString(vmName) {
		vmName = i.ref.id
	}
	group := strings.ToLower(tag(in.Tags, TagGroup))
	if !nameRE.MatchString(group) {
		group = strings.ToLower(aws.ToString(in.VpcId))
	}
	if group == "" {
		group = i.ref.region
	}
	v := jit.VM{Name: vmName, Group: group, Backend: jit.BackendAWS, OS: osName, ExternalID: i.ref.arn(),
		Labels: map[string]string{
			LabelRegion: i.ref.region, LabelAccount: i.ref.account, LabelInstanceID: i.ref.id,
			LabelVPC: aws.ToString(in.VpcId), LabelState: state,
		}}
	if name != "" {
		v.Labels[LabelName] = clipLabel(name)
	}
	rep := jit.Report{Time: c.now().UTC(), OS: osName, Enforceable: true, Hostname: aws.ToString(in.PrivateDnsName)}
	var reasons []string
	if state != string(types.InstanceStateNameRunning) && state != string(types.InstanceStateNamePending) {
		reasons = append(reasons, "instance is "+state)
	}
	eni := i.primary()
	if eni == nil {
		reasons = append([]string{ReasonNoENI}, reasons...)
	} else {
		v.Labels[LabelENI] = aws.ToString(eni.NetworkInterfaceId)
		var ids []string
		var sgs []types.SecurityGroup
		for _, g := range eni.Groups {
			ids = append(ids, aws.ToString(g.GroupId))
			if sg, ok := groups[aws.ToString(g.GroupId)]; ok {
				sgs = append(sgs, sg)
			}
		}
		v.Labels[LabelSecurityGroups] = clipLabel(strings.Join(ids, ","))
		if gerr != nil {
			reasons = append([]string{jit.ErrorMessage(gerr)}, reasons...)
		} else {
			rep.Exposed = exposed(sgs)
		}
	}
	v.Addresses = addresses(in)
	if len(reasons) > 0 {
		rep.Enforceable, rep.Reason = false, reasons[0]
	}
	return jit.Discovered{VM: v, Report: rep}
}

// addresses lists the instance's addresses, the primary interface's
// first: private IPv4, public IPv4, IPv6; at most 32.
func addresses(in types.Instance) []string {
	var out []string
	add := func(s *string) {
		if a, err := netip.ParseAddr(aws.ToString(s)); err == nil && !slices.Contains(out, a.String()) && len(out) < 32 {
			out = append(out, a.String())
		}
	}
	enis := slices.Clone(in.NetworkInterfaces)
	slices.SortStableFunc(enis, func(a, b types.InstanceNetworkInterface) int {
		return cmp.Compare(deviceIndex(a), deviceIndex(b))
	})
	for _, e := range enis {
		add(e.PrivateIpAddress)
		if e.Association != nil {
			add(e.Association.PublicIp)
		}
		for _, a := range e.Ipv6Addresses {
			add(a.Ipv6Address)
		}
	}
	if len(out) == 0 {
		add(in.PrivateIpAddress)
		add(in.PublicIpAddress)
	}
	return out
}

func deviceIndex(e types.InstanceNetworkInterface) int32 {
	if e.Attachment == nil {
		return 1 << 30
	}
	return aws.ToInt32(e.Attachment.DeviceIndex)
}

// exposed returns the management ports an ingress rule of one of sgs
// opens over TCP to 0.0.0.0/0 or ::/0.
func exposed(sgs []types.SecurityGroup) []jit.Socket {
	var out []jit.Socket
	for _, port := range ManagementPorts {
		open := false
		for _, sg := range sgs {
			for _, p := range sg.IpPermissions {
				if permCovers(p, jit.ProtoTCP, port) && len(internetRanges(p)) > 0 {
					open = true
				}
			}
		}
		if open {
			out = append(out, jit.Socket{Protocol: jit.ProtoTCP, Port: port})
		}
	}
	return out
}

// groups reads the security groups ids of region, by id.
func (c *Client) groups(ctx context.Context, region string, ids []string) (map[string]types.SecurityGroup, error) {
	out := map[string]types.SecurityGroup{}
	for len(ids) > 0 {
		n := min(len(ids), 200)
		batch := ids[:n]
		ids = ids[n:]
		p := ec2.NewDescribeSecurityGroupsPaginator(c.ec2(region), &ec2.DescribeSecurityGroupsInput{
			Filters: []types.Filter{{Name: aws.String("group-id"), Values: batch}}})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return out, callError(err, "describe the security groups of region "+region)
			}
			for _, g := range page.SecurityGroups {
				out[aws.ToString(g.GroupId)] = g
			}
		}
	}
	return out, nil
}

func clipLabel(s string) string {
	if len(s) > 512 {
		return s[:509] + "..."
	}
	return s
}
