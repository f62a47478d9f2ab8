// Package nft is the Linux enforcer of the agent backend: it makes a host's
// desired state true in nftables over netlink (github.com/google/nftables),
// and can cut a grant's established connections through conntrack.
//
// ajar owns one table, inet ajar, and touches nothing else. Every Apply
// replaces the whole table in one atomic netlink batch (add table, delete
// table, add table and everything in it, one Flush), so the host never sees
// a half-written ruleset. The table holds:
//
//   - lock_tcp and lock_udp: the locked ports (inet_service);
//   - grant4_tcp, grant4_udp, grant6_tcp, grant6_udp: the open grants as
//     (source range . port) elements of concatenated interval sets, each
//     element with a kernel timeout equal to the grant's remaining seconds,
//     so grants close on time even if the agent dies;
//   - a base chain input (filter hook, priority filter - 10, policy
//     accept) that accepts established/related packets, accepts sources
//     found in the grant sets, and drops the locked ports;
//   - a base chain output (filter hook output, same priority and policy)
//     that keeps the host's side of a locked port from reviving, by
//     mid-stream pickup, a connection with an address no grant allows.
//
// The output chain is what makes closing connections at expiry stick.
// After KillConnections deletes a connection's conntrack entry, the next
// packet the host sends on it would otherwise create a new entry through
// TCP mid-stream pickup (nf_conntrack_tcp_loose, on by default), in the
// host's direction, and the client's packets would then pass the input
// chain as replies. So a packet of conntrack state new leaving a locked
// port for an address outside the grants is dropped, unless it is an
// opening SYN (a connection the host itself starts). The input chain needs
// no such rule: a client's packet that would be picked up mid-stream is of
// state new too, and is dropped by the lock unless a grant allows it. UDP
// has no opening packet to tell a new exchange from an old one: a datagram
// the host sends from a locked UDP port to an address no grant allows is
// dropped whenever conntrack holds no entry for it, so after the entries
// are deleted neither side's datagrams pass again, and a host service that
// itself sends first from a locked UDP port reaches only granted
// addresses. No sysctl is changed.
//
// Packets to ports outside the lock reach the end of the chains and their
// accept policy, so they are left to the rest of the host's firewall; the
// same holds for the established/related and SYN accepts, which is why they
// need not be limited to the JIT ports. The kernel refuses overlapping
// intervals, so grants whose prefixes nest are flattened first: each
// address gets the longest timeout of the grants covering it.
package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/ajarhq/ajar/internal/jit"
)

// Names of what ajar creates.
const (
	TableName       = "ajar"
	InputChainName  = "input"
	OutputChainName = "output"
	// ChainPriority runs the chains just before the usual filter chains.
	ChainPriority = -10
)

// Set names, one per protocol (lock) or family and protocol (grants).
const (
	setLockTCP   = "lock_tcp"
	setLockUDP   = "lock_udp"
	setGrant4TCP = "grant4_tcp"
	setGrant4UDP = "grant4_udp"
	setGrant6TCP = "grant6_tcp"
	setGrant6UDP = "grant6_udp"
)

// elemsPerMessage bounds one NEWSETELEM message: its element list is one
// netlink attribute, whose length field has 16 bits.
const elemsPerMessage = 400

// defaultTimeout bounds one netlink exchange when ctx has no deadline.
const defaultTimeout = 30 * time.Second

var (
	table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

	keyV4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	keyV6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
)

// Options configure a Firewall.
type Options struct {
	// NetNS, when non-zero, is an open file descriptor of the network
	// namespace to program (tests); zero means the caller's own. The
	// caller keeps it open while the Firewall is in use.
	NetNS int
	// Logger receives debug records of what was applied; nil discards.
	Logger *slog.Logger
}

// Firewall programs the host's nftables. It implements enforce.Enforcer;
// the host is the VM, so the vm argument of Apply and Remove is ignored.
// Its methods are safe for concurrent use.
type Firewall struct {
	netns int
	log   *slog.Logger
	mu    sync.Mutex
	// known is set while the ruleset generation knownGen is one this
	// Firewall wrote (Apply) or verified (Check) for a state whose
	// fingerprint is knownFP: Check has nothing to compare until the
	// generation or the state moves on.
	known    bool
	knownGen uint32
	knownFP  [32]byte
}

// New returns a Firewall. It does not touch the kernel; see Works.
func New(opts Options) (*Firewall, error) {
	if opts.NetNS < 0 {
		return nil, fmt.Errorf("nft: bad netns fd %d", opts.NetNS)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Firewall{netns: opts.NetNS, log: log}, nil
}

// conn returns a netlink connection to nftables whose sockets give up at
// ctx's deadline (or after defaultTimeout) and can send a batch of sndbuf
// bytes.
func (f *Firewall) conn(ctx context.Context, sndbuf int) (*nftables.Conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultTimeout)
	}
	return nftables.New(
		nftables.WithNetNSFd(f.netns),
		nftables.WithSockOptions(func(c *netlink.Conn) error {
			if err := c.SetDeadline(deadline); err != nil {
				return fmt.Errorf("set deadline: %w", err)
			}
			if sndbuf > 0 {
				return setSendBuffer(c, sndbuf)
			}
			return nil
		}),
	)
}

// setSendBuffer raises the socket's send buffer so that one batch fits in
// one sendmsg, past the wmem_max limit when allowed (CAP_NET_ADMIN, which
// programming nftables needs anyway).
func setSendBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("send buffer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
	}); err != nil {
		return fmt.Errorf("send buffer: %w", err)
	}
	if serr != nil {
		if err := c.SetWriteBuffer(n); err != nil {
			return fmt.Errorf("send buffer: %w", err)
		}
	}
	return nil
}

// Works reports whether nftables can be programmed here: the kernel has
// nf_tables and the process may use it. It returns nil if so.
func (f *Firewall) Works() error {
	c, err := f.conn(context.Background(), 0)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("nftables unusable: %w", err)
	}
	return nil
}

// Apply makes table inet ajar match st in one atomic batch. A state without
// a lock removes the table. Grants with no time left are skipped.
func (f *Firewall) Apply(ctx context.Context, _ jit.VM, st jit.DesiredState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(st.Lock) == 0 {
		return f.Remove(ctx, jit.VM{})
	}
	p, err := buildPlan(st, 0)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	start := time.Now()
	f.known = false
	before, gerr := f.generation(ctx)
	c, err := f.conn(ctx, p.batchSize())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	// Adding first makes the delete succeed whether or not the table exists.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	for _, s := range p.sets {
		if err := c.AddSet(s.set, nil); err != nil {
			return fmt.Errorf("add set %s: %w", s.set.Name, err)
		}
		for chunk := range slices.Chunk(s.elems, elemsPerMessage) {
			if err := c.SetAddElements(s.set, chunk); err != nil {
				return fmt.Errorf("add elements to %s: %w", s.set.Name, err)
			}
		}
	}
	for _, pc := range p.chains {
		ch := c.AddChain(pc.chain)
		for _, exprs := range pc.rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply table inet %s: %w", TableName, err)
	}
	// Our batch is one transaction: one generation on, unless another
	// process committed too, and then the next Check compares.
	if after, err := f.generation(ctx); gerr == nil && err == nil && after == before+1 {
		f.known, f.knownGen, f.knownFP = true, after, fingerprint(st)
	}
	f.log.Debug("nftables applied", "revision", st.Revision, "locked", len(st.Lock),
		"grants", len(st.Grants), "elements", p.elemCount(), "took", time.Since(start))
	return nil
}

// Remove deletes table inet ajar; it is no error if the table is absent.
func (f *Firewall) Remove(ctx context.Context, _ jit.VM) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known = false
	c, err := f.conn(ctx, 0)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	c.AddTable(table)
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove table inet %s: %w", TableName, err)
	}
	f.log.Debug("nftables table removed")
	return nil
}

// KillConnections deletes the conntrack entries of connections between
// g.Source and the host's g.Port over g.Protocol, whichever side the entry
// was made from, so that established connections a grant let in stop at
// once: the next packet either side sends meets the lock.
func (f *Firewall) KillConnections(ctx context.Context, g jit.GrantRule) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	src, err := parseSource(g.Source)
	if err != nil {
		return jit.Invalid("source", "%v", err)
	}
	if g.Port < 1 || g.Port > 65535 {
		return jit.Invalid("port", "port %d out of range", g.Port)
	}
	protos, err := protocols(g.Protocol)
	if err != nil {
		return jit.Invalid("protocol", "%v", err)
	}
	want := map[uint8]bool{}
	for _, p := range protos {
		want[ipProto(p)] = true
	}
	c, err := conntrack.Dial(&netlink.Config{NetNS: f.netns})
	if err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	// The conntrack socket has no deadline: closing it ends a blocked
	// exchange when ctx does.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	flows, err := c.Dump(nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("conntrack dump: %w", err)
	}
	var errs error
	n := 0
	for _, fl := range flows {
		if err := ctx.Err(); err != nil {
			return err
		}
		o := fl.TupleOrig
		if !want[o.Proto.Protocol] {
			continue
		}
		// The client opened it, or the entry was picked up mid-stream
		// from the host's side while the grant allowed it.
		fromClient := o.Proto.DestinationPort == uint16(g.Port) && src.Contains(o.IP.SourceAddress.Unmap())
		fromHost := o.Proto.SourcePort == uint16(g.Port) && src.Contains(o.IP.DestinationAddress.Unmap())
		if !fromClient && !fromHost {
			continue
		}
		if err := c.Delete(fl); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = errors.Join(errs, err)
			continue
		}
		n++
	}
	f.log.Debug("conntrack entries deleted", "source", src, "port", g.Port, "protocol", g.Protocol, "count", n)
	if errs != nil {
		return fmt.Errorf("conntrack delete: %w", errs)
	}
	return nil
}

func ipProto(p string) uint8 {
	if p == jit.ProtoUDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// plannedSet is one set of the table with its elements.
type plannedSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// plannedChain is one base chain of the table with its rules.
type plannedChain struct {
	chain *nftables.Chain
	rules [][]expr.Any
}

// plan is everything Apply writes into the table.
type plan struct {
	sets   []plannedSet
	chains []plannedChain
}

func (p *plan) elemCount() int {
	n := 0
	for _, s := range p.sets {
		n += len(s.elems)
	}
	return n
}

// batchSize estimates the bytes of p's batch, generously.
func (p *plan) batchSize() int {
	return 256<<10 + 128*p.elemCount()
}

// buildPlan computes the table for st, skipping grants with minSecs seconds
// or less left.
func buildPlan(st jit.DesiredState, minSecs int64) (*plan, error) {
	var tcpPorts, udpPorts []uint16
	for i, l := range st.Lock {
		if l.Port < 1 || l.Port > 65535 {
			return nil, jit.Invalid(fmt.Sprintf("lock[%d].port", i), "port %d out of range", l.Port)
		}
		protos, err := protocols(l.Protocol)
		if err != nil {
			return nil, jit.Invalid(fmt.Sprintf("lock[%d].protocol", i), "%v", err)
		}
		for _, p := range protos {
			if p == jit.ProtoTCP {
				tcpPorts = append(tcpPorts, uint16(l.Port))
			} else {
				udpPorts = append(udpPorts, uint16(l.Port))
			}
		}
	}
	groups, err := groupGrants(st.Grants, minSecs)
	if err != nil {
		return nil, err
	}

	p := &plan{}
	p.sets = append(p.sets,
		portSet(1, setLockTCP, tcpPorts),
		portSet(2, setLockUDP, udpPorts),
		grantSet(3, setGrant4TCP, false, groups[setKey{false, jit.ProtoTCP}]),
		grantSet(4, setGrant4UDP, false, groups[setKey{false, jit.ProtoUDP}]),
		grantSet(5, setGrant6TCP, true, groups[setKey{true, jit.ProtoTCP}]),
		grantSet(6, setGrant6UDP, true, groups[setKey{true, jit.ProtoUDP}]),
	)
	ids := map[string]uint32{}
	for _, s := range p.sets {
		ids[s.set.Name] = s.set.ID
	}
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		policy := nftables.ChainPolicyAccept
		return &nftables.Chain{
			Name:     name,
			Table:    table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  hook,
			Priority: nftables.ChainPriorityRef(ChainPriority),
			Policy:   &policy,
		}
	}
	p.chains = []plannedChain{{
		chain: chain(InputChainName, nftables.ChainHookInput),
		rules: [][]expr.Any{
			establishedRule(),
			grantRule(inbound, false, unix.IPPROTO_TCP, setGrant4TCP, ids[setGrant4TCP]),
			grantRule(inbound, false, unix.IPPROTO_UDP, setGrant4UDP, ids[setGrant4UDP]),
			grantRule(inbound, true, unix.IPPROTO_TCP, setGrant6TCP, ids[setGrant6TCP]),
			grantRule(inbound, true, unix.IPPROTO_UDP, setGrant6UDP, ids[setGrant6UDP]),
			lockRule(inbound, unix.IPPROTO_TCP, setLockTCP, ids[setLockTCP]),
			lockRule(inbound, unix.IPPROTO_UDP, setLockUDP, ids[setLockUDP]),
		},
	}, {
		chain: chain(OutputChainName, nftables.ChainHookOutput),
		rules: [][]expr.Any{
			establishedRule(),
			synRule(),
			grantRule(outbound, false, unix.IPPROTO_TCP, setGrant4TCP, ids[setGrant4TCP]),
			grantRule(outbound, false, unix.IPPROTO_UDP, setGrant4UDP, ids[setGrant4UDP]),
			grantRule(outbound, true, unix.IPPROTO_TCP, setGrant6TCP, ids[setGrant6TCP]),
			grantRule(outbound, true, unix.IPPROTO_UDP, setGrant6UDP, ids[setGrant6UDP]),
			lockRule(outbound, unix.IPPROTO_TCP, setLockTCP, ids[setLockTCP]),
			lockRule(outbound, unix.IPPROTO_UDP, setLockUDP, ids[setLockUDP]),
		},
	}}
	return p, nil
}

// portSet is a set of locked ports. IDs are set explicitly (unique within
// the batch) so the library's global ID counter is never used.
func portSet(id uint32, name string, ports []uint16) plannedSet {
	slices.Sort(ports)
	ports = slices.Compact(ports)
	elems := make([]nftables.SetElement, len(ports))
	for i, port := range ports {
		elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(port)}
	}
	return plannedSet{
		set: &nftables.Set{
			Table: table, ID: id, Name: name,
			KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian,
		},
		elems: elems,
	}
}

// grantSet is a set of (source range . port) elements with timeouts.
func grantSet(id uint32, name string, v6 bool, ps portSpans) plannedSet {
	kt := keyV4
	if v6 {
		kt = keyV6
	}
	var elems []nftables.SetElement
	for _, port := range sortedPorts(ps) {
		for _, s := range ps[port] {
			elems = append(elems, nftables.SetElement{
				Key:     concatKey(s.lo, port),
				KeyEnd:  concatKey(s.hi, port),
				Timeout: time.Duration(s.secs) * time.Second,
			})
		}
	}
	return plannedSet{
		set: &nftables.Set{
			Table: table, ID: id, Name: name,
			KeyType: kt, KeyByteOrder: binaryutil.BigEndian,
			Interval: true, Concatenation: true, HasTimeout: true,
		},
		elems: elems,
	}
}

// concatKey is the key of an (address . port) element: each field padded
// to 32-bit registers.
func concatKey(a netip.Addr, port uint16) []byte {
	b := a.AsSlice()
	return append(b, byte(port>>8), byte(port), 0, 0)
}

// Registers as nft allocates them for an (address . port) concatenation:
// the address goes into the 16-byte register 1 (32-bit registers 8 to 11),
// the port into the 32-bit register right after the address. The kernel
// dumps 32-bit register 12 (NFT_REG32_04) as the 16-byte register 2 it
// starts, so that spelling is used and Check compares equal.
const (
	reg1 = unix.NFT_REG_1
	// regPortAfterIPv4 holds the port after a 4-byte address in register 1.
	regPortAfterIPv4 = unix.NFT_REG32_01
	// regPortAfterIPv6 holds the port after a 16-byte address in register 1.
	regPortAfterIPv6 = unix.NFT_REG_2
)

// direction says which way a rule looks at a packet: inbound packets (the
// input chain) come from the client's address to the locked port, outbound
// ones (the output chain) leave the locked port for the client's address.
type direction bool

const (
	inbound  direction = false
	outbound direction = true
)

// Offsets in the IPv4 and IPv6 headers of the source and destination
// addresses, and in the TCP and UDP headers of the ports.
const (
	offIPv4Src, offIPv4Dst = 12, 16
	offIPv6Src, offIPv6Dst = 8, 24
	offSrcPort, offDstPort = 0, 2
	offTCPFlags            = 13
)

// ctState returns the expressions matching ct state in states.
func ctState(states uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(states),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// establishedRule: ct state established,related accept.
func establishedRule() []expr.Any {
	return append(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		&expr.Verdict{Kind: expr.VerdictAccept})
}

// TCP flags (RFC 9293).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// synRule: tcp flags & (fin|syn|rst|ack) == syn accept: a connection the
// host opens itself, which the output chain's lock rules must not take for
// a mid-stream pickup.
func synRule() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: offTCPFlags, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1,
			Mask: []byte{tcpFIN | tcpSYN | tcpRST | tcpACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{tcpSYN}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// grantRule: ip[6] saddr . tcp|udp dport @set accept (inbound), or
// ip[6] daddr . tcp|udp sport @set accept (outbound).
func grantRule(dir direction, v6 bool, l4 byte, set string, id uint32) []expr.Any {
	nfproto, off, alen, portReg := byte(unix.NFPROTO_IPV4), uint32(offIPv4Src), uint32(4), uint32(regPortAfterIPv4)
	if dir == outbound {
		off = offIPv4Dst
	}
	if v6 {
		nfproto, off, alen, portReg = unix.NFPROTO_IPV6, offIPv6Src, 16, regPortAfterIPv6
		if dir == outbound {
			off = offIPv6Dst
		}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{l4}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: alen},
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: localPort(dir), Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set, SetID: id},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// localPort is the offset of the host's own port in a packet going dir.
func localPort(dir direction) uint32 {
	if dir == outbound {
		return offSrcPort
	}
	return offDstPort
}

// lockRule: tcp|udp dport @set drop (inbound), or ct state new tcp|udp
// sport @set drop (outbound).
func lockRule(dir direction, l4 byte, set string, id uint32) []expr.Any {
	var exprs []expr.Any
	if dir == outbound {
		exprs = ctState(expr.CtStateBitNEW)
	}
	return append(exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{l4}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: localPort(dir), Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set, SetID: id},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}
