package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// A setting is one `key = value` of a config file, with its line.
type setting struct {
	key, value string
	line       int
}

// readConfigFile reads a TOML config file of top-level keys, each a flag
// name, and returns its settings in order, their values as the flag would
// take them (an array of strings joins with commas). Syntax errors,
// tables, dotted keys and keys given twice are errors naming the line.
// It does not know the flags: the caller checks keys and values.
func readConfigFile(path string) ([]setting, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p unstable.Parser
	p.Reset(b)
	var out []setting
	seen := map[string]int{}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			var parts []string
			line := 0
			for it := e.Key(); it.Next(); {
				parts = append(parts, string(it.Node().Data))
				if line == 0 {
					line = p.Shape(it.Node().Raw).Start.Line
				}
			}
			key := strings.Join(parts, ".")
			if len(parts) > 1 {
				return nil, fmt.Errorf("%s:%d: %s: dotted keys are not used; every key is a flag name, such as max-conns", path, line, key)
			}
			if first, ok := seen[key]; ok {
				return nil, fmt.Errorf("%s:%d: %s: given twice (first on line %d)", path, line, key, first)
			}
			seen[key] = line
			v, err := tomlValue(e.Value())
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %v", path, line, key, err)
			}
			out = append(out, setting{key: key, value: v, line: line})
		case unstable.Table, unstable.ArrayTable:
			line := 0
			if it := e.Key(); it.Next() {
				line = p.Shape(it.Node().Raw).Start.Line
			}
			return nil, fmt.Errorf("%s:%d: tables are not used; every key is a flag name at the top of the file", path, line)
		}
	}
	if err := p.Error(); err != nil {
		var pe *unstable.ParserError
		if errors.As(err, &pe) && len(pe.Highlight) > 0 {
			return nil, fmt.Errorf("%s:%d: %s", path, p.Shape(p.Range(pe.Highlight)).Start.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// tomlValue returns a TOML value as a flag's text.
func tomlValue(n *unstable.Node) (string, error) {
	switch n.Kind {
	case unstable.String, unstable.Bool:
		return string(n.Data), nil
	case unstable.Integer:
		// strconv's base 0, which the flag package uses, reads TOML's
		// 0x, 0o, 0b and underscores too.
		return string(n.Data), nil
	case unstable.Array:
		var items []string
		for it := n.Children(); it.Next(); {
			c := it.Node()
			if c.Kind != unstable.String {
				return "", fmt.Errorf("an array holds strings only, found a %s", c.Kind)
			}
			if strings.Contains(string(c.Data), ",") {
				return "", fmt.Errorf("%q: an item holds no comma", c.Data)
			}
			items = append(items, string(c.Data))
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("a %s is not a value here; use a string, a number, true or false, or an array of strings", n.Kind)
}

// tomlQuote writes s as a TOML basic string.
func tomlQuote(s string) string {
	return strconv.Quote(s) // for printable ASCII, Go's escapes are TOML's
}
