package jit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// ComputeHash returns the hash that chains e to its predecessor: SHA-256
// over e.PrevHash and every other field, each length-prefixed so that no
// two different events encode alike.
func (e *Event) ComputeHash() string {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(e.PrevHash))
	field([]byte(strconv.FormatInt(e.Seq, 10)))
	field([]byte(strconv.FormatInt(e.Time.UnixNano(), 10)))
	field([]byte(e.Actor))
	field([]byte(e.ActorAddress))
	field([]byte(e.VMID))
	field([]byte(e.Group))
	field([]byte(e.Operation))
	field([]byte(e.Outcome))
	field(e.Details)
	return hex.EncodeToString(h.Sum(nil))
}

// ChainVerifier walks events in sequence order and finds the first one
// that breaks the chain.
type ChainVerifier struct {
	prev    string
	nextSeq int64
	Events  int64
	BadSeq  int64  // 0 while the chain is intact
	Problem string // why BadSeq is bad
	Head    Anchor // the last event added
	// Anchor, when set, is an event recorded earlier that must still be
	// in the chain with the same hash.
	Anchor *Anchor
	// Start, when set, is the event the chain continues (the last one
	// archived out of the log): the first event must follow it.
	Start *Anchor
}

// Add checks the next event; it returns false once the chain is broken.
func (v *ChainVerifier) Add(e *Event) bool {
	if v.BadSeq != 0 {
		return false
	}
	if v.nextSeq == 0 {
		v.nextSeq = 1
		if v.Start != nil {
			v.nextSeq, v.prev = v.Start.Seq+1, v.Start.Hash
			v.Head = *v.Start
		}
	}
	v.Events++
	switch {
	case e.Seq != v.nextSeq:
		v.BadSeq, v.Problem = v.nextSeq, "event "+strconv.FormatInt(v.nextSeq, 10)+" is missing"
	case e.PrevHash != v.prev && v.Start != nil && e.Seq == v.Start.Seq+1:
		v.BadSeq, v.Problem = e.Seq, "previous-hash link does not match the archived event "+v.Start.String()+" it follows"
	case e.PrevHash != v.prev:
		v.BadSeq, v.Problem = e.Seq, "previous-hash link does not match the event before it"
	case e.ComputeHash() != e.Hash:
		v.BadSeq, v.Problem = e.Seq, "content does not match its hash"
	case v.Anchor != nil && e.Seq == v.Anchor.Seq && e.Hash != v.Anchor.Hash:
		v.BadSeq, v.Problem = e.Seq, "event does not match the anchor "+v.Anchor.String()+": the log was rewritten from here on"
	}
	if v.BadSeq != 0 {
		return false
	}
	v.prev = e.Hash
	v.nextSeq++
	v.Head = Anchor{Seq: e.Seq, Hash: e.Hash}
	return true
}

// Finish checks what can only be checked at the end: that the chain
// reaches the anchor.
func (v *ChainVerifier) Finish() {
	if v.Events == 0 && v.Start != nil {
		v.Head = *v.Start
	}
	if v.BadSeq == 0 && v.Anchor != nil && v.Head.Seq < v.Anchor.Seq {
		v.BadSeq, v.Problem = v.Head.Seq+1, "the log ends before the anchor "+v.Anchor.String()+": events were cut off"
	}
}
