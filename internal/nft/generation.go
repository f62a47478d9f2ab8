// The fingerprint of a desired state and the kernel's ruleset generation
// let Check skip the table dump while neither has moved.

package nft

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ajarhq/ajar/internal/jit"
)

// fingerprint identifies what Apply(st) writes, timeouts aside: the locked
// ports and the grants it keeps (those with time left).
func fingerprint(st jit.DesiredState) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(st.Lock))
	for _, l := range st.Lock {
		fmt.Fprintf(h, "%d/%s\n", l.Port, l.Protocol)
	}
	for _, g := range st.Grants {
		if g.RemainingSeconds > 0 { // as buildPlan(st, 0) keeps them
			fmt.Fprintf(h, "%s %d/%s %s\n", g.ID, g.Port, g.Protocol, g.Source)
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// generation returns the kernel's nftables ruleset generation in the
// Firewall's namespace: it changes with every committed nftables
// transaction, whoever makes it, so an unchanged generation means an
// unchanged ruleset.
func (f *Firewall) generation(ctx context.Context) (uint32, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.netns})
	if err != nil {
		return 0, fmt.Errorf("netlink: %w", err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultTimeout)
	}
	if err := c.SetDeadline(deadline); err != nil {
		return 0, fmt.Errorf("netlink: %w", err)
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("nftables generation: %w", err)
		}
	}
	return 0, fmt.Errorf("nftables generation: no NFTA_GEN_ID in the answer")
}
