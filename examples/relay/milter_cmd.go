package main

import (
	"fmt"
	"io"
	"strings"
)

// milterCommand is `relay milter`: the relay's port-25 filters served to
// Postfix or sendmail over the milter protocol, and nothing else on the
// network (no SMTP or submission listener). The configuration file, its
// reloads, the metrics, the statistics and the control socket are those
// of `relay serve`; -listen here names the milter socket
// (milter_server.listen), not the SMTP one.
func milterCommand(args []string, stderr io.Writer) int {
	args = milterArgs(args)
	s, path, ok := commandSettings("relay milter", args, stderr, nil)
	if !ok {
		return 2
	}
	if s.MilterServer.Listen == "" {
		fmt.Fprintln(stderr, "relay milter: say where to listen: -listen inet:HOST:PORT or unix:PATH (or milter_server.listen)")
		return 2
	}
	log := s.logger(stderr)
	if err := runServer(s, path, args, true, log); err != nil {
		log.Error("relay stopped", "error", err)
		return 1
	}
	return 0
}

// milterArgs turns `relay milter`'s -listen into -milter-listen, so the
// one flag set (and a reload, which reads the arguments again) takes it.
func milterArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "listen" {
			a = "-milter-listen"
			if hasValue {
				a += "=" + value
			}
		}
		out = append(out, a)
	}
	return out
}
