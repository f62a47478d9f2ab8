//go:build manpages

package main

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// With -tags manpages (the packaging command's build, never the shipped
// binary's), "ajar gen-man DIR" writes a man page for every command:
// ajar(1), ajar-login(1), ajar-jit-enable(1), ...
func init() { extraCommands = append(extraCommands, genManCommand) }

func genManCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return errors.New("gen-man needs a folder")
			}
			root.DisableAutoGenTag = true
			return doc.GenManTree(root, &doc.GenManHeader{Title: "AJAR", Section: "1", Source: "ajar", Manual: "ajar manual"}, args[0])
		},
	}
}
