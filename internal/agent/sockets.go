package agent

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ajarhq/ajar/internal/jit"
)

// ListeningSockets reads the host's listening TCP sockets and bound UDP
// sockets from /proc/net/{tcp,tcp6,udp,udp6} under root ("/proc" in
// production), lowest ports first and at most jit.MaxReportSockets of them
// (management ports are low; a report with more would be refused).
func ListeningSockets(root string) []jit.Socket {
	var out []jit.Socket
	for _, f := range []struct{ file, proto, state string }{
		{"net/tcp", jit.ProtoTCP, "0A"}, {"net/tcp6", jit.ProtoTCP, "0A"},
		{"net/udp", jit.ProtoUDP, "07"}, {"net/udp6", jit.ProtoUDP, "07"},
	} {
		out = append(out, parseProcNet(root+"/"+f.file, f.proto, f.state)...)
	}
	slices.SortFunc(out, func(a, b jit.Socket) int {
		if a.Port != b.Port {
			return a.Port - b.Port
		}
		return strings.Compare(a.Protocol, b.Protocol)
	})
	out = slices.CompactFunc(out, func(a, b jit.Socket) bool { return a.Port == b.Port && a.Protocol == b.Protocol })
	return out[:min(len(out), jit.MaxReportSockets)]
}

func parseProcNet(path, proto, state string) []jit.Socket {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []jit.Socket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != state {
			continue
		}
		_, portHex, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || port == 0 {
			continue
		}
		out = append(out, jit.Socket{Protocol: proto, Port: int(port)})
	}
	return out
}
