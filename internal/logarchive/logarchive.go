// Package logarchive writes, reads and checks the archive files of the
// activity log: JSON lines, one event a line with its hashes, as ajar log
// archive and ajard's automatic retention write them. A file checks on its
// own (each event links to the one before it); files together check from
// the log's first event (Verify), and the log's checkpoint must then be
// their last event.
package logarchive

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/ajarhq/ajar/internal/jit"
)

// File is what one archive file holds: the events First to Head, and its
// chain's first problem ("" when every event links to the one before and
// matches its hash).
type File struct {
	Name    string
	First   int64
	Head    jit.Anchor
	Events  int64
	Problem string
}

// Read reads and checks an archive file on its own: each event links to
// the one before it, starting from the first one's link.
func Read(name string) (File, error) {
	f := File{Name: name}
	var v *jit.ChainVerifier
	err := Walk(name, func(e *jit.Event) bool {
		if v == nil {
			f.First = e.Seq
			v = &jit.ChainVerifier{Start: &jit.Anchor{Seq: e.Seq - 1, Hash: e.PrevHash}}
		}
		return v.Add(e)
	})
	if err != nil || v == nil {
		return f, err
	}
	v.Finish()
	f.Events, f.Head = v.Events, v.Head
	if v.BadSeq != 0 {
		f.Problem = fmt.Sprintf("%s: event %d: %s", name, v.BadSeq, v.Problem)
	}
	return f, nil
}

// Walk calls fn with each event of an archive file until it returns
// false; a line that is not an event is an error.
func Walk(name string, fn func(*jit.Event) bool) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e jit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("%s:%d: not an activity event: %v", name, line, err)
		}
		if !fn(&e) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Verify checks that files, taken in the order of their events, hold one
// chain from the log's first event; anchor, when set, must be in it. It
// returns the chain's last event and how many events it holds.
func Verify(files []string, anchor *jit.Anchor) (jit.Anchor, int64, error) {
	var fs []File
	for _, name := range files {
		f, err := Read(name)
		if err != nil {
			return jit.Anchor{}, 0, err
		}
		if f.Events > 0 {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return jit.Anchor{}, 0, errors.New("the archive files hold no events")
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].First < fs[j].First })
	v := jit.ChainVerifier{Anchor: anchor}
	for _, f := range fs {
		if err := Walk(f.Name, v.Add); err != nil {
			return jit.Anchor{}, 0, err
		}
		if v.BadSeq != 0 {
			return jit.Anchor{}, 0, fmt.Errorf("archive %s: event %d: %s", f.Name, v.BadSeq, v.Problem)
		}
	}
	v.Finish()
	if v.BadSeq != 0 {
		return jit.Anchor{}, 0, fmt.Errorf("archives: event %d: %s", v.BadSeq, v.Problem)
	}
	return v.Head, v.Events, nil
}

// Write makes the archive file name (which must not exist) from what
// export writes: into name.partial first, synced and checked, then under
// its name. When export writes no event, no file is left and the File
// has no events; a file whose chain does not check is an error, and is
// not kept.
func Write(name string, export func(io.Writer) error) (File, error) {
	if _, err := os.Lstat(name); err == nil {
		return File{}, fmt.Errorf("%s exists; archives are never overwritten", name)
	}
	partial := name + ".partial"
	w, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return File{}, err
	}
	defer os.Remove(partial)
	err = export(w)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, err
	}
	f, err := Read(partial)
	if err != nil || f.Events == 0 {
		return File{}, err
	}
	if f.Problem != "" {
		return File{}, fmt.Errorf("the archive does not verify: %s", f.Problem)
	}
	if err := os.Link(partial, name); err != nil {
		return File{}, err
	}
	f.Name = name
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return f, err
	}
	defer d.Close()
	return f, d.Sync()
}
