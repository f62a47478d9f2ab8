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
// local deadline computed from the remaining seconds the server sent, so
// that a skewed host clock cannot stretch a grant.
type held struct {
	State     jit.DesiredState     `json:"state"`
	Deadlines map[string]time.Time `json:"deadlines"` // grant id -> local end
}

func hold(st jit.DesiredState, received time.Time) held {
	h := held{State: st, Deadlines: map[string]time.Time{}}
	for _, g := range st.Grants {
		h.Deadlines[g.ID] = received.Add(time.Duration(g.RemainingSeconds) * time.Second)
	}
	return h
}

// at returns the state as of now: grants past their deadline left out,
// remaining seconds counted down (rounded up).
func (h held) at(now time.Time) jit.DesiredState {
	st := h.State
	st.Grants = make([]jit.GrantRule, 0, len(h.State.Grants))
	for _, g := range h.State.Grants {
		left := h.Deadlines[g.ID].Sub(now)
		if left <= 0 {
			continue
		}
		g.RemainingSeconds = int64((left + time.Second - 1) / time.Second)
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
	return h, true, nil
}
