package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kong"
)

// KeepGPU's command names. Invoked through a link of one of these names,
// keepgpu speaks KeepGPU's CLI: its JSON results and errors, its exit
// statuses and its "Error: ..." lines (see the README's table of what
// differs between the names).
const (
	keepGPUName    = "keep-gpu"
	keepGPUMCPName = "keep-gpu-mcp-server"
)

// runAsKeepGPU is run for the names keep-gpu and keep-gpu-mcp-server, by
// run, which has caught exit codes, unset empty variables and started the
// command lines that need no parser.
// Every command of keepgpu is there; what differs, in KeepGPU's commands
// (its blocking mode, serve, start, status, stop, service-stop,
// list-gpus), is how results and failures are told:
//
//   - status, stop and list-gpus print JSON on stdout, their errors too, as
//     {"error": "..."}; a job id the service does not know is a result, not
//     an error (exit 0), and so is a stop that did not release cleanly;
//   - any other failure prints "Error: ..." on stdout;
//   - a failure exits 1, a bad command line included (keepgpu exits 2).
func runAsKeepGPU(name string, args []string, stdout, stderr io.Writer) int {
	if name == keepGPUMCPName {
		var err error
		if args, err = mcpServerArgs(args, stdout); err != nil {
			var c exitCode
			if errors.As(err, &c) {
				return int(c)
			}
			fmt.Fprintf(stderr, "usage: %s\n%s: error: %v\n", mcpServerUsage, keepGPUMCPName, err)
			return 2
		}
	}
	var cli CLI
	io := &stdio{out: stdout, err: stderr, name: keepGPUName}
	parser, err := newParser(&cli, stdout, stderr)
	if err != nil {
		return keepGPUFailed(io, "", err)
	}
	parser.Model.Name = keepGPUName
	ctx, err := parser.Parse(args)
	if err != nil {
		cmd := ""
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil && pe.Context.Selected() != nil {
			cmd = pe.Context.Selected().Name
		}
		if !keepGPUHas[cmd] {
			fmt.Fprintf(stderr, "keepgpu: %v\n", err)
			if cmd == "wrap" {
				return 125 // wrap's own failure, told apart from any status of the command
			}
			return 2
		}
		return keepGPUFailed(io, cmd, err)
	}
	cmd := ""
	if n := ctx.Selected(); n != nil {
		cmd = n.Name
	}
	// keepgpu's own commands, and what keepgpu runs of itself (a supervised
	// holder, the service's GPU listing), answer in keepgpu's forms.
	own := !keepGPUHas[cmd] || cli.Hold.Supervised || cli.ListGPUs.Local
	if own {
		io.name = ""
	} else if cmd == "list-gpus" {
		cli.ListGPUs.JSON = true // KeepGPU's list-gpus prints JSON
	}
	if err := ctx.Run(io); err != nil {
		var c exitCode
		if errors.As(err, &c) {
			return int(c)
		}
		if own {
			fmt.Fprintf(stderr, "keepgpu: error: %v\n", err)
			if errors.As(err, new(usageError)) {
				return 2
			}
			return 1
		}
		return keepGPUFailed(io, cmd, err)
	}
	return 0
}

// keepGPUHas are KeepGPU's commands ("" and hold: its blocking mode).
var keepGPUHas = map[string]bool{"": true, "hold": true, "serve": true, "start": true, "status": true,
	"stop": true, "service-stop": true, "list-gpus": true}

// keepGPUFailed tells err as KeepGPU does for cmd, and returns 1.
func keepGPUFailed(io *stdio, cmd string, err error) int {
	switch cmd {
	case "status", "stop", "list-gpus":
		printJSON(io.out, map[string]string{"error": err.Error()})
	default:
		fmt.Fprintf(io.out, "Error: %v\n", err)
	}
	return 1
}

const mcpServerUsage = keepGPUMCPName + " [-h] [--mode {stdio,http}] [--host HOST] [--port PORT]"

// mcpServerArgs turns KeepGPU's keep-gpu-mcp-server command line into
// keepgpu's: --mode stdio (the default) is keepgpu mcp, whose --host and
// --port name the service it calls; --mode http is keepgpu serve, which
// serves MCP on /rpc beside the other methods. A command line that starts
// with a command is keep-gpu's: that is how keepgpu runs itself again (the
// service, its holders), with the name it was invoked as.
func mcpServerArgs(args []string, stdout io.Writer) ([]string, error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args, nil
	}
	mode := "stdio"
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		flag, val, hasVal := strings.Cut(a, "=")
		switch flag {
		case "-h", "--help":
			fmt.Fprintf(stdout, "usage: %s\n\nkeepgpu's MCP server: --mode stdio is keepgpu mcp, --mode http is keepgpu serve.\n", mcpServerUsage)
			return nil, exitCode(0)
		case "--mode", "--host", "--port":
		default:
			return nil, fmt.Errorf("unrecognized arguments: %s", strings.Join(args[i:], " "))
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("argument %s: expected one argument", flag)
			}
			i++
			val = args[i]
		}
		if flag == "--mode" {
			if val != "stdio" && val != "http" {
				return nil, fmt.Errorf("argument --mode: invalid choice: '%s' (choose from 'stdio', 'http')", val)
			}
			mode = val
			continue
		}
		rest = append(rest, flag+"="+val)
	}
	if mode == "http" {
		return append([]string{"serve"}, rest...), nil
	}
	return append([]string{"mcp"}, rest...), nil
}

// cmdName is the name to tell the user to run: keepgpu, or keep-gpu.
func (s *stdio) cmdName() string {
	if s.name != "" {
		return s.name
	}
	return "keepgpu"
}
