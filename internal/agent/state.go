package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ajarhq/ajar/internal/jit"
)

// Config is what enrollment leaves in the state folder.
type Config struct {
	Server      string `json:"server"`
	Token       string `json:"token"`
	Fingerprint string `json:"fingerprint,omitempty"`
	VMID        string `json:"vmId"`
	Name        string `json:"name"`
	Group       string `json:"group"`
}

// File names in the state folder.
const (
	configFile = "agent.json"
	cacheFile  = "desired-state.json"
)

// LoadConfig reads the enrollment config from dir.
func LoadConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("%s is not enrolled: run ajar-agent enroll first", dir)
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", configFile, err)
	}
	return c, nil
}

// SaveConfig writes the enrollment config, readable by its owner only.
func SaveConfig(dir string, c Config) error {
	return writeFile(dir, configFile, c)
}

// writeFile writes v as JSON into dir/name atomically, mode 0600 in a
// 0700 folder.
func writeFile(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// held is a desired state as the agent holds it: each grant's end as a
// local deadline, measured from the moment the state arrived by the time
// the server said was left (its end time minus its own time), so that a
// skewed host clock cannot stretch a grant.
type held struct {
	State     jit.DesiredState     `json:"state"`
	Deadlines map[string]time.Time `json:"deadlines"` // grant id -> local end
	// Received is the host time the state arrived.
	Received time.Time `json:"received"`
}

func hold(st jit.DesiredState, received time.Time) held {
	h := held{State: st, Deadlines: map[string]time.Time{}, Received: received}
	for _, g := range st.Grants {
		h.Deadlines[g.ID] = received.Add(left(st, g))
	}
	return h
}

// left is the time a grant had left when the server produced st.
func left(st jit.DesiredState, g jit.GrantRule) time.Duration {
	if !g.EndTime.IsZero() && !st.ServerTime.IsZero() {
		return g.EndTime.Sub(st.ServerTime)
	}
	return time.Duration(g.RemainingSeconds) * time.Second
}

// endedGrace is how long a grant stays in the state, with no seconds left,
// after its deadline: its kernel element, whose timeout was rounded to
// whole seconds, can outlive the deadline by half a second (plus the time
// the Apply took), and the firewall's check must know that the element
// belongs to a grant that just ended.
const endedGrace = 1500 * time.Millisecond

// at returns the state as of now: each grant's remaining seconds counted
// down to the nearest second (kernel timeouts are whole seconds, so a
// grant ends within half a second of its deadline), grants that ended in
// the last endedGrace with 0 seconds left (Apply writes nothing for them),
// older ones left out, and never more than the server gave (a clock moved
// back cannot lengthen a grant).
func (h held) at(now time.Time) jit.DesiredState {
	st := h.State
	st.Grants = make([]jit.GrantRule, 0, len(h.State.Grants))
	for _, g := range h.State.Grants {
		until := h.Deadlines[g.ID].Sub(now)
		secs := int64((until + time.Second/2) / time.Second)
		most := int64((left(h.State, g) + time.Second/2) / time.Second)
		if secs = min(secs, most); secs <= 0 {
			if until <= -endedGrace {
				continue
			}
			secs = 0
		}
		g.RemainingSeconds = secs
		st.Grants = append(st.Grants, g)
	}
	return st
}

func loadCache(dir string) (held, bool, error) {
	var h held
	b, err := os.ReadFile(filepath.Join(dir, cacheFile))
	if errors.Is(err, os.ErrNotExist) {
		return h, false, nil
	}
	if err != nil {
		return h, false, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, false, fmt.Errorf("%s: %w", cacheFile, err)
	}
	if now := time.Now(); h.Received.IsZero() || now.Before(h.Received) {
		// The host clock is behind the time the state arrived (a reset
		// clock at boot): deadlines measured on it could stretch grants.
		// Keep the lock, drop the grants; the server sends them again.
		h.State.Grants = nil
	}
	return h, true, nil
}
