package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ajarhq/ajar/internal/client"
	"github.com/ajarhq/ajar/internal/jit"
)

// asJSON reports whether -o json was given.
func (a *app) asJSON() bool { return a.output == "json" }

// printJSON prints v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; Flush prints them.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	}
	return t
}

// row adds a row; empty cells print as "-".
func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = cell(fmt.Sprint(c))
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cell makes a value safe for one table cell: no tabs, newlines or other
// control characters (which could also drive the terminal), "-" if empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// fmtTime formats a time for people, in local time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

// parseDuration reads a Go duration (3h, 30m, 1h30m), a number of days
// (7d), or an ISO 8601 duration (PT3H).
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(strings.ToUpper(s), "P"):
		return jit.ParseISODuration(s)
	case strings.HasSuffix(s, "d"):
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err == nil && n >= 0 && n <= 400 {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	default:
		if d, err := time.ParseDuration(s); err == nil {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%q is not a duration such as 3h, 30m, 7d or PT3H", s)
}

// isoDuration converts a duration flag to the API's ISO 8601 form; ""
// stays "".
func isoDuration(flag, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	if d <= 0 {
		return "", fmt.Errorf("--%s must be positive, got %s", flag, s)
	}
	return jit.FormatISODuration(d), nil
}

// parseTime reads an RFC 3339 time, or a duration meaning that long ago
// (24h, 7d).
func parseTime(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := parseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--%s: %q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration ago (24h, 7d)", flag, s)
}

// parsePort reads "22", "22/tcp", "22/udp" or "22/*". proto is "" when the
// protocol is not given.
func parsePort(s string) (port int, proto string, err error) {
	num, p, hasProto := strings.Cut(s, "/")
	port, err = strconv.Atoi(num)
	if err != nil || port < 1 || port > 65535 {
		return 0, "", fmt.Errorf("port %q must be a number from 1 to 65535, optionally with /tcp, /udp or /*", s)
	}
	if !hasProto {
		return port, "", nil
	}
	switch strings.ToLower(p) {
	case "tcp":
		return port, jit.ProtoTCP, nil
	case "udp":
		return port, jit.ProtoUDP, nil
	case "*", "any":
		return port, jit.ProtoAny, nil
	}
	return 0, "", fmt.Errorf("port %q: protocol must be tcp, udp or *", s)
}

// onVM runs fn with a client and the VM that ref names: the common start
// of the commands that take one VM argument.
func (a *app) onVM(ctx context.Context, ref string, fn func(c *client.Client, vm jit.VMView) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	vm, err := resolveVM(ctx, c, ref)
	if err != nil {
		return err
	}
	return fn(c, vm)
}

// resolveVM finds a VM by name, group/name or id. A name used in several
// groups is an error that lists the groups.
func resolveVM(ctx context.Context, c *client.Client, ref string) (jit.VMView, error) {
	if group, name, ok := strings.Cut(ref, "/"); ok {
		vms, err := c.ListVMs(ctx, group, "", name)
		if err != nil {
			return jit.VMView{}, err
		}
		if len(vms) == 0 {
			return jit.VMView{}, jit.Errorf(jit.ENotFound, "no VM %s in group %s", name, group)
		}
		return vms[0], nil
	}
	vms, err := c.ListVMs(ctx, "", "", ref)
	if err != nil {
		return jit.VMView{}, err
	}
	switch len(vms) {
	case 1:
		return vms[0], nil
	case 0:
		v, err := c.GetVM(ctx, ref)
		if jit.ErrorCode(err) == jit.ENotFound {
			return v, jit.Errorf(jit.ENotFound, "no VM named %s", ref)
		}
		return v, err
	}
	var groups []string
	for _, v := range vms {
		groups = append(groups, v.Group)
	}
	slices.Sort(groups)
	return jit.VMView{}, jit.Errorf(jit.EInvalid, "VM name %s is used in several groups (%s): name it as GROUP/%s, such as %s/%s",
		ref, strings.Join(groups, ", "), ref, groups[0], ref)
}

// vmNames maps the VM ids of events to group/name for tables; it is best
// effort (a reader may not see every VM, and deleted VMs are gone). A few
// VMs are looked up one by one, many by listing every VM.
func vmNames(ctx context.Context, c *client.Client, events []jit.Event) map[string]string {
	m := map[string]string{}
	var ids []string
	for _, e := range events {
		if e.VMID != "" {
			ids = append(ids, e.VMID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) <= 20 {
		for _, id := range ids {
			if v, err := c.GetVM(ctx, id); err == nil {
				m[id] = v.Group + "/" + v.Name
			}
		}
		return m
	}
	vms, err := c.ListVMs(ctx, "", "", "")
	if err != nil {
		return m
	}
	for _, v := range vms {
		m[v.ID] = v.Group + "/" + v.Name
	}
	return m
}

// parent returns a command that only holds subcommands: alone it prints
// its help, with an unknown subcommand it fails.
func parent(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q (see %q)", args[0], cmd.CommandPath(), cmd.CommandPath()+" --help")
			}
			return cmd.Help()
		},
	}
}

// hidden marks cmd as an older spelling that works but is not listed.
func hidden(cmd *cobra.Command) *cobra.Command {
	cmd.Hidden = true
	return cmd
}
