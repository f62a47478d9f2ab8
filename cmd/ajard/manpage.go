//go:build manpages

package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// With -tags manpages (the packaging command's build, never the shipped
// binary's), "ajard man" prints ajard(8), its options taken from the flags.
func init() {
	extraCommands["man"] = func(args []string, stdout io.Writer) error { return writeManPage(stdout) }
}

func roff(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`, "\n.", "\n\\&.").Replace(s)
}

func writeManPage(w io.Writer) error {
	var c config
	fs := newFlagSet(&c, io.Discard)
	var b strings.Builder
	b.WriteString(`.TH AJARD 8 "" "ajard" "ajar manual"
.SH NAME
ajard \- the ajar server: just\-in\-time VM access (API, web console, agents' endpoint)
.SH SYNOPSIS
.B ajard
[\fIOPTIONS\fR]
.br
.B ajard config check
[\fIFILE\fR]
.br
.B ajard config example
.br
.B ajard \-\-version
.SH DESCRIPTION
ajard keeps management ports closed and opens them, for one address and a bounded time, when a
policy allows a request; every step lands in a hash\-chained activity log. It serves the REST API,
the web console, the Azure\-compatible JIT API and the agents' endpoint, over SQLite or PostgreSQL.
.PP
Every option is also a key of the config file (by the same name, without the dashes) and an
environment variable (AJAR_ and the name in capitals with underscores). The command line wins over
the environment, which wins over the file, which wins over the defaults. A bad setting stops ajard
with the file, line and key at fault.
.PP
On SIGTERM ajard stops accepting connections, answers the agents' long polls at once, and gives the
requests under way \-\-shutdown\-timeout to finish.
.SH OPTIONS
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, ".TP\n.B \\-\\-%s", roff(f.Name))
		if name != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", roff(name))
		}
		b.WriteString("\n" + roff(usage))
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(&b, " (default %s)", roff(f.DefValue))
		}
		if !notInFile[f.Name] {
			fmt.Fprintf(&b, "; env %s", roff(envName(f.Name)))
		}
		b.WriteString("\n")
	})
	b.WriteString(`.SH FILES
.TP
.I /etc/ajar/ajard.toml
the config file (read when present; \-\-config names another)
.TP
.I /etc/ajar/ajard.env
AJAR_* variables for the systemd unit
.TP
.I /var/lib/ajar
the SQLite database and the automatic TLS certificate of the packaged service
.SH ENVIRONMENT
.TP
.B AJAR_BOOTSTRAP_TOKEN
the first admin's API token instead of a generated one (or \-\-bootstrap\-token\-file)
.SH SEE ALSO
.BR ajar (1),
.BR ajar\-agent (8)
`)
	_, err := io.WriteString(w, b.String())
	return err
}
