package awsec2

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajarhq/ajar/internal/enforce"
	"github.com/ajarhq/ajar/internal/jit"
)

// Enforcer makes desired states true in the security groups of EC2
// instances (backend "aws"), as the package documentation describes. It
// is safe for concurrent use; changes for one instance are serialized
// within the process.
type Enforcer struct {
	c *Client
	// RevokeShadowing lets Apply revoke (and record) the rules of other
	// security groups that open a locked port to the internet, in groups
	// that only this instance uses (--aws-revoke-shadowing).
	RevokeShadowing bool

	mu    sync.Mutex
	locks map[string]*sync.Mutex // by instance id
}

var _ enforce.Enforcer = (*Enforcer)(nil)

// NewEnforcer returns an Enforcer that works through c.
func NewEnforcer(c *Client, revokeShadowing bool) *Enforcer {
	return &Enforcer{c: c, RevokeShadowing: revokeShadowing, locks: map[string]*sync.Mutex{}}
}

func (e *Enforcer) lock(id string) func() {
	e.mu.Lock()
	m, ok := e.locks[id]
	if !ok {
		m = &sync.Mutex{}
		e.locks[id] = m
	}
	e.mu.Unlock()
	m.Lock()
	return m.Unlock
}

func (e *Enforcer) target(vm jit.VM) (ref, error) {
	if vm.Backend != jit.BackendAWS {
		return ref{}, jit.Invalid("backend", "VM %s has backend %q, not %q", vm.Name, vm.Backend, jit.BackendAWS)
	}
	return parseARN(vm.ExternalID)
}

// Apply makes ajar's security group for vm hold one allow rule per grant,
// attaches it to the primary network interface, and checks that no other
// security group there opens a locked port to the internet: such rules
// are revoked (and recorded) when RevokeShadowing allows it, else Apply
// fails with a jit.EConflict error naming them. A state with an empty
// lock is Remove.
func (e *Enforcer) Apply(ctx context.Context, vm jit.VM, state jit.DesiredState) error {
	if len(state.Lock) == 0 {
		return e.Remove(ctx, vm)
	}
	r, err := e.target(vm)
	if err != nil {
		return err
	}
	want, err := grantRules(state.Grants)
	if err != nil {
		return err
	}
	defer e.lock(r.id)()
	in, err := e.instance(ctx, r)
	if err != nil {
		return err
	}
	eni := in.primary()
	if eni == nil {
		return jit.Errorf(jit.EConflict, "%s", ReasonNoENI)
	}
	own, err := e.ownGroup(ctx, r, aws.ToString(eni.VpcId), state.Lock)
	if err != nil {
		return err
	}
	if err := e.syncGrants(ctx, r, own, want); err != nil {
		return err
	}
	if err := e.attach(ctx, r, eni, aws.ToString(own.GroupId)); err != nil {
		return err
	}
	return e.holdLock(ctx, r, eni, aws.ToString(own.GroupId), state.Lock)
}

// Remove restores the rules ajar revoked for vm, detaches and deletes
// ajar's security group for it, and changes nothing else. A VM gone from
// AWS is cleaned up through the tags.
func (e *Enforcer) Remove(ctx context.Context, vm jit.VM) error {
	r, err := e.target(vm)
	if err != nil {
		return err
	}
	defer e.lock(r.id)()
	if err := e.restore(ctx, r, nil); err != nil {
		return err
	}
	owns, err := e.ownGroups(ctx, r)
	if err != nil {
		return err
	}
	cl := e.c.ec2(r.region)
	for _, g := range owns {
		gid := aws.ToString(g.GroupId)
		enis, err := e.enisWith(ctx, r.region, gid)
		if err != nil {
			return err
		}
		for _, n := range enis {
			var rest []string
			for _, x := range n.Groups {
				if id := aws.ToString(x.GroupId); id != gid {
					rest = append(rest, id)
				}
			}
			if len(rest) == 0 {
				return jit.Errorf(jit.EConflict, "network interface %s has no security group but ajar's; ajar does not leave it without one", aws.ToString(n.NetworkInterfaceId))
			}
			_, err := cl.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: n.NetworkInterfaceId, Groups: rest})
			if err != nil && !strings.HasSuffix(apiCode(err), ".NotFound") {
				return callError(err, "detach security group "+gid+" from "+aws.ToString(n.NetworkInterfaceId))
			}
			e.c.log.Info("aws: ajar's security group detached", "instance", r.id, "group", gid, "eni", aws.ToString(n.NetworkInterfaceId))
		}
		err = e.c.settle(ctx, func() error {
			_, err := cl.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(gid)})
			return err
		}, "DependencyViolation")
		if err != nil && apiCode(err) != "InvalidGroup.NotFound" {
			return callError(err, "delete security group "+gid)
		}
		e.c.log.Info("aws: ajar's security group deleted", "instance", r.id, "group", gid)
	}
	return nil
}

// Shadowed lists the rules of other security groups on vm's primary
// network interface that let in some of the locked ports, as
// "GROUP-ID/PROTO PORT from SOURCE": ajar's lock does not close what they
// open.
func (e *Enforcer) Shadowed(ctx context.Context, vm jit.VM) ([]string, error) {
	r, err := e.target(vm)
	if err != nil {
		return nil, err
	}
	owns, err := e.ownGroups(ctx, r)
	if err != nil || len(owns) == 0 {
		return nil, err
	}
	lock := parseLock(tag(owns[0].Tags, TagLock))
	in, err := e.instance(ctx, r)
	if err != nil {
		return nil, err
	}
	eni := in.primary()
	if eni == nil {
		return nil, nil
	}
	var ids []string
	for _, g := range eni.Groups {
		if id := aws.ToString(g.GroupId); id != aws.ToString(owns[0].GroupId) {
			ids = append(ids, id)
		}
	}
	groups, err := e.c.groups(ctx, r.region, ids)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		rules, others := flatten(groups[id].IpPermissions)
		for _, x := range rules {
			if x.overlaps(lock) {
				out = append(out, id+"/"+x.String())
			}
		}
		for _, o := range others {
			out = append(out, id+"/"+o)
		}
	}
	return out, nil
}

// instance reads the instance r.
func (e *Enforcer) instance(ctx context.Context, r ref) (instance, error) {
	out, err := e.c.ec2(r.region).DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{r.id}})
	if err != nil {
		return instance{}, callError(err, "describe instance "+r.id)
	}
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			if aws.ToString(in.InstanceId) == r.id {
				if in.State != nil && in.State.Name == types.InstanceStateNameTerminated {
					break
				}
				return instance{ref: r, in: in}, nil
			}
		}
	}
	return instance{}, &jit.Error{Code: jit.ENotFound, Message: "not found in AWS: instance " + r.id}
}

// ownGroups returns the security groups ajar created for the instance r.
func (e *Enforcer) ownGroups(ctx context.Context, r ref) ([]types.SecurityGroup, error) {
	var out []types.SecurityGroup
	p := ec2.NewDescribeSecurityGroupsPaginator(e.c.ec2(r.region), &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagManaged), Values: []string{"true"}},
		{Name: aws.String("tag:" + TagInstance), Values: []string{r.id}},
	}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, callError(err, "describe the security groups ajar made for "+r.id)
		}
		out = append(out, page.SecurityGroups...)
	}
	return out, nil
}

// ownGroup returns ajar's security group for r in vpc, creating it
// (without rules, its default egress rule revoked) when there is none,
// its lock tag set to lock.
func (e *Enforcer) ownGroup(ctx context.Context, r ref, vpc string, lock []jit.PortLock) (types.SecurityGroup, error) {
	owns, err := e.ownGroups(ctx, r)
	if err != nil {
		return types.SecurityGroup{}, err
	}
	cl := e.c.ec2(r.region)
	for _, g := range owns {
		if aws.ToString(g.VpcId) != vpc {
			continue // the instance moved: Remove of an old one is left to cleanup below
		}
		if tag(g.Tags, TagLock) != formatLock(lock) {
			_, err := cl.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(g.GroupId)},
				Tags: []types.Tag{{Key: aws.String(TagLock), Value: aws.String(formatLock(lock))}}})
			if err != nil {
				return g, callError(err, "tag security group "+aws.ToString(g.GroupId))
			}
		}
		return g, nil
	}
	name := "ajar-" + r.id
	out, err := cl.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(name),
		Description: aws.String("ajar just-in-time access grants for " + r.id + "; managed by ajar"),
		VpcId:       aws.String(vpc),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup, Tags: []types.Tag{
			{Key: aws.String(TagManaged), Value: aws.String("true")},
			{Key: aws.String(TagInstance), Value: aws.String(r.id)},
			{Key: aws.String(TagLock), Value: aws.String(formatLock(lock))},
			{Key: aws.String("Name"), Value: aws.String(name)},
		}}},
	})
	if err != nil {
		return types.SecurityGroup{}, callError(err, "create security group "+name+" in "+vpc)
	}
	gid := aws.ToString(out.GroupId)
	e.c.log.Info("aws: ajar's security group created", "instance", r.id, "group", gid, "vpc", vpc)
	// Its only rule, allow all egress, would widen what the instance may
	// send when its other groups restrict egress.
	err = e.c.settle(ctx, func() error {
		_, err := cl.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: out.GroupId,
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("-1"), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}})
		return err
	}, "InvalidGroup.NotFound")
	if err != nil && apiCode(err) != "InvalidPermission.NotFound" {
		return types.SecurityGroup{}, callError(err, "revoke the egress rule of security group "+gid)
	}
	return types.SecurityGroup{GroupId: out.GroupId, GroupName: aws.String(name), VpcId: aws.String(vpc)}, nil
}

// syncGrants makes the ingress rules of own exactly want.
func (e *Enforcer) syncGrants(ctx context.Context, r ref, own types.SecurityGroup, want []rule) error {
	have, _ := flatten(own.IpPermissions)
	gid := aws.ToString(own.GroupId)
	cl := e.c.ec2(r.region)
	var revoke, authorize []types.IpPermission
	for _, h := range have {
		if !slices.ContainsFunc(want, func(w rule) bool { return w.key() == h.key() }) {
			revoke = append(revoke, h.perm())
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h rule) bool { return w.key() == h.key() }) {
			authorize = append(authorize, w.perm())
		}
	}
	if len(revoke) > 0 {
		err := e.c.settle(ctx, func() error {
			_, err := cl.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: own.GroupId, IpPermissions: revoke})
			return err
		}, "InvalidGroup.NotFound")
		if err != nil {
			return callError(err, "revoke ended grants in security group "+gid)
		}
		e.c.log.Info("aws: grant rules revoked", "instance", r.id, "group", gid, "rules", len(revoke))
	}
	if len(authorize) > 0 {
		err := e.c.settle(ctx, func() error {
			_, err := cl.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: own.GroupId, IpPermissions: authorize})
			return err
		}, "InvalidGroup.NotFound")
		if err != nil {
			return callError(err, "allow grants in security group "+gid)
		}
		e.c.log.Info("aws: grant rules allowed", "instance", r.id, "group", gid, "rules", len(authorize))
	}
	return nil
}

// attach adds gid to the security groups of eni.
func (e *Enforcer) attach(ctx context.Context, r ref, eni *types.InstanceNetworkInterface, gid string) error {
	var ids []string
	for _, g := range eni.Groups {
		ids = append(ids, aws.ToString(g.GroupId))
	}
	if slices.Contains(ids, gid) {
		return nil
	}
	ids = append(ids, gid)
	err := e.c.settle(ctx, func() error {
		_, err := e.c.ec2(r.region).ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
			NetworkInterfaceId: eni.NetworkInterfaceId, Groups: ids})
		return err
	}, "InvalidGroup.NotFound")
	if err != nil {
		return callError(err, "attach security group "+gid+" to network interface "+aws.ToString(eni.NetworkInterfaceId))
	}
	e.c.log.Info("aws: ajar's security group attached", "instance", r.id, "group", gid, "eni", aws.ToString(eni.NetworkInterfaceId))
	return nil
}

// holdLock checks the other security groups of eni for rules that open a
// locked port to the internet, revokes and records them when allowed,
// and restores recorded rules the lock no longer covers.
func (e *Enforcer) holdLock(ctx context.Context, r ref, eni *types.InstanceNetworkInterface, own string, lock []jit.PortLock) error {
	if err := e.restore(ctx, r, lock); err != nil {
		return err
	}
	var ids []string
	for _, g := range eni.Groups {
		if id := aws.ToString(g.GroupId); id != own {
			ids = append(ids, id)
		}
	}
	groups, err := e.c.groups(ctx, r.region, ids)
	if err != nil {
		return err
	}
	var conflicts []string
	for _, id := range ids {
		rules, _ := flatten(groups[id].IpPermissions)
		var open []rule
		for _, x := range rules {
			if x.fromInternet() && x.overlaps(lock) {
				open = append(open, x)
			}
		}
		if len(open) == 0 {
			continue
		}
		if !e.RevokeShadowing {
			for _, x := range open {
				conflicts = append(conflicts, id+"/"+x.String())
			}
			continue
		}
		shared, err := e.sharedGroup(ctx, r, id)
		if err != nil {
			return err
		}
		for _, x := range open {
			switch {
			case shared:
				conflicts = append(conflicts, id+"/"+x.String()+" (group shared with other network interfaces)")
			case !x.within(lock):
				conflicts = append(conflicts, id+"/"+x.String()+" (opens more than the locked ports)")
			default:
				if err := e.revokeRecorded(ctx, r, id, x); err != nil {
					return err
				}
			}
		}
	}
	if len(conflicts) > 0 {
		hint := "remove those rules or run ajard with --aws-revoke-shadowing"
		if e.RevokeShadowing {
			hint = "ajar revokes such rules only in groups this instance alone uses, and only when they open nothing but locked ports: change them by hand"
		}
		return jit.Errorf(jit.EConflict, "the lock does not hold: %s open locked ports to the internet; %s", strings.Join(conflicts, ", "), hint)
	}
	return nil
}

// sharedGroup reports whether a network interface other than those of
// the instance r uses the security group id.
func (e *Enforcer) sharedGroup(ctx context.Context, r ref, id string) (bool, error) {
	enis, err := e.enisWith(ctx, r.region, id)
	if err != nil {
		return true, err
	}
	for _, n := range enis {
		if n.Attachment == nil || aws.ToString(n.Attachment.InstanceId) != r.id {
			return true, nil
		}
	}
	return false, nil
}

// enisWith returns the network interfaces that use the security group id.
func (e *Enforcer) enisWith(ctx context.Context, region, id string) ([]types.NetworkInterface, error) {
	var out []types.NetworkInterface
	p := ec2.NewDescribeNetworkInterfacesPaginator(e.c.ec2(region), &ec2.DescribeNetworkInterfacesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{id}}}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, callError(err, "describe the network interfaces of security group "+id)
		}
		out = append(out, page.NetworkInterfaces...)
	}
	return out, nil
}

// revokeRecorded records x in the tags of the group id, then revokes it.
func (e *Enforcer) revokeRecorded(ctx context.Context, r ref, id string, x rule) error {
	cl := e.c.ec2(r.region)
	key := recordKey(x)
	tags := []types.Tag{
		{Key: aws.String(TagRevokedFor), Value: aws.String(r.id)},
		{Key: aws.String(key), Value: aws.String(x.key())},
	}
	if x.desc != "" {
		tags = append(tags, types.Tag{Key: aws.String(key + ":description"), Value: aws.String(x.desc)})
	}
	if _, err := cl.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: tags}); err != nil {
		return callError(err, "record a rule of security group "+id+" in its tags")
	}
	_, err := cl.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: []types.IpPermission{x.perm()}})
	if err != nil && apiCode(err) != "InvalidPermission.NotFound" {
		return callError(err, "revoke "+x.String()+" in security group "+id)
	}
	e.c.log.Warn("aws: rule that opened a locked port to the internet revoked (recorded in the group's tags)", "instance", r.id, "group", id, "rule", x.String())
	return nil
}

// restore puts back the rules ajar revoked for the instance r that lock
// does not cover (every one when lock is nil), and deletes their records.
func (e *Enforcer) restore(ctx context.Context, r ref, lock []jit.PortLock) error {
	cl := e.c.ec2(r.region)
	p := ec2.NewDescribeSecurityGroupsPaginator(cl, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagRevokedFor), Values: []string{r.id}}}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return callError(err, "describe the security groups whose rules ajar revoked for "+r.id)
		}
		for _, g := range page.SecurityGroups {
			id := aws.ToString(g.GroupId)
			recs := records(g.Tags)
			left := 0
			for _, x := range recs {
				if lock != nil && x.fromInternet() && x.within(lock) {
					left++
					continue
				}
				_, err := cl.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: []types.IpPermission{x.perm()}})
				if err != nil && apiCode(err) != "InvalidPermission.Duplicate" {
					return callError(err, "restore "+x.String()+" in security group "+id)
				}
				del := []types.Tag{{Key: aws.String(recordKey(x))}, {Key: aws.String(recordKey(x) + ":description")}}
				if _, err := cl.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: del}); err != nil {
					return callError(err, "delete the record of a restored rule of security group "+id)
				}
				e.c.log.Info("aws: revoked rule restored", "instance", r.id, "group", id, "rule", x.String())
			}
			if left == 0 {
				if _, err := cl.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: []types.Tag{{Key: aws.String(TagRevokedFor)}}}); err != nil {
					return callError(err, "untag security group "+id)
				}
			}
		}
	}
	return nil
}
