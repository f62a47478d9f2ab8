package control

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/ajarhq/ajar/internal/jit"
)

// Page sizes of the lists: a list answers DefaultPage items when asked
// for no limit, and refuses a limit above its maximum.
const (
	DefaultPage = 100
	// MaxVMPage bounds a page of VMs (each carries its usage figures).
	MaxVMPage = 1000
	// MaxPage bounds a page of grants, requests, users, tokens and role
	// bindings.
	MaxPage = 10000
)

// A cursor is where the next page of a list starts: the list's name and
// the sort key of the last item of the page before. Clients treat it as
// opaque text.
func encodeCursor(list string, key ...any) string {
	b, err := json.Marshal(append([]any{list}, key...))
	if err != nil {
		panic("control: cursor: " + err.Error()) // only strings and numbers get here
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor of list into the pointers in key; "" leaves
// them alone.
func decodeCursor(s, list string, key ...any) error {
	if s == "" {
		return nil
	}
	bad := jit.Invalid("cursor", "cursor is not one this list handed out (pass the list's \"next\" value as it is)")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != len(key)+1 {
		return bad
	}
	var name string
	if err := json.Unmarshal(parts[0], &name); err != nil || name != list {
		return bad
	}
	for i, k := range key {
		if err := json.Unmarshal(parts[i+1], k); err != nil {
			return bad
		}
	}
	return nil
}

// pageLimit checks a requested page size: 0 means def; above max is
// refused, naming the limit.
func pageLimit(limit, def, max int) (int, error) {
	switch {
	case limit == 0:
		return def, nil
	case limit < 0 || limit > max:
		return 0, jit.Invalid("limit", "limit must be from 1 to %d, got %d", max, limit)
	}
	return limit, nil
}

// PageOf pages a short list the store answers whole (groups, role
// bindings: only admins make them): the items after cursor in the order
// of key, at most limit of them (0: DefaultPage; above MaxPage refused),
// and the next page's cursor ("" after the last).
func PageOf[T any](items []T, list string, key func(T) string, limit int, cursor string) ([]T, string, error) {
	limit, err := pageLimit(limit, DefaultPage, MaxPage)
	if err != nil {
		return nil, "", err
	}
	var after string
	if err := decodeCursor(cursor, list, &after); err != nil {
		return nil, "", err
	}
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	if cursor != "" {
		i, _ := slices.BinarySearchFunc(items, after, func(it T, k string) int {
			if key(it) <= k {
				return -1
			}
			return 1
		})
		items = items[i:]
	}
	if len(items) <= limit {
		return items, "", nil
	}
	return items[:limit], encodeCursor(list, key(items[limit-1])), nil
}
