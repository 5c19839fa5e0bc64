// Command keepgpu holds a job's GPUs while it does CPU work and hands them
// over the moment the job is ready to use them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"
)

// CLI is keepgpu's command line. Every flag also reads a KEEPGPU_*
// environment variable (KEEPGPU_VRAM for --vram, …), because batch scripts
// set the environment rather than flags.
type CLI struct {
	Hold     HoldCmd     `cmd:"" default:"withargs" help:"Hold GPUs until SIGINT or SIGTERM (the default command)."`
	Wrap     WrapCmd     `cmd:"" help:"Run a command, holding the GPUs until it is ready for them or exits."`
	Ready    ReadyCmd    `cmd:"" help:"Inside keepgpu wrap: release the GPUs now; returns once they are free."`
	ListGPUs ListGPUsCmd `cmd:"" name:"list-gpus" help:"List the node's GPUs, their memory, utilization and compute processes."`
	Version  VersionCmd  `cmd:"" help:"Print keepgpu's version."`

	Serve       ServeCmd       `cmd:"" help:"Run the keepgpu service in the foreground: sessions, HTTP + JSON-RPC API, dashboard."`
	Start       StartCmd       `cmd:"" help:"Start a keep session in the service (starting the service first if needed); prints its job id."`
	Status      StatusCmd      `cmd:"" help:"Show the service's sessions as JSON."`
	Stop        StopCmd        `cmd:"" help:"Stop a session (--job-id) or every session (--all); returns once their GPUs are released."`
	ServiceStop ServiceStopCmd `cmd:"" name:"service-stop" help:"Stop the service started by keepgpu start (refuses while sessions are active, unless --force)."`
	MCP         MCPCmd         `cmd:"" name:"mcp" help:"Serve MCP on stdio: tools start_keep, stop_keep, status, list_gpus, through the service."`

	Relay RelayCmd `cmd:"" hidden:"" help:"Copy stdin to stdout (keepgpu wrap --ready-marker's output, after the command exited)."`
}

// exitCode carries an exit status out of kong's Exit hook.
type exitCode int

// usageError marks an error in the command line: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is keepgpu's entry point: tests call it with their own writers.
func run(args []string, stdout, stderr io.Writer) (code int) {
	if name := filepath.Base(os.Args[0]); name == keepGPUName || name == keepGPUMCPName {
		return runAsKeepGPU(name, args, stdout, stderr) // KeepGPU's CLI: keepgpuname.go
	}
	var cli CLI
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	unsetEmpty()
	parser, err := newParser(&cli, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "keepgpu: %v\n", err)
		return 2
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "keepgpu: %v\n", err)
		fmt.Fprintln(stderr, "Run 'keepgpu --help' for usage.")
		if len(args) > 0 && args[0] == "wrap" {
			return 125 // wrap's own failure, told apart from any status of the command
		}
		return 2
	}
	if err := ctx.Run(); err != nil {
		var c exitCode
		if errors.As(err, &c) {
			return int(c)
		}
		fmt.Fprintf(stderr, "keepgpu: error: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			return 2
		}
		return 1
	}
	return 0
}

// contextWithTimeout is context.WithTimeout where 0 means no limit.
func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), d)
}

// unsetEmpty drops empty KEEPGPU_* variables (and KeepGPU's
// KEEP_GPU_PLATFORM): an `export KEEPGPU_VRAM=` in a batch script means
// "not set", not "set to nothing".
//
// Inside keepgpu wrap (KEEPGPU_PID is set), the KEEPGPU_READY_FILE, _FIFO and
// _MARKER that wrap gave its command describe that wrap, not settings for a
// keepgpu the command runs in turn: they are dropped too.
func unsetEmpty() {
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); (strings.HasPrefix(k, "KEEPGPU_") || k == "KEEP_GPU_PLATFORM") && v == "" {
			os.Unsetenv(k)
		}
	}
	if os.Getenv("KEEPGPU_PID") != "" {
		for _, k := range []string{"KEEPGPU_READY_FILE", "KEEPGPU_READY_FIFO", "KEEPGPU_READY_MARKER"} {
			os.Unsetenv(k)
		}
	}
}

// newParser builds keepgpu's command-line parser around cli.
func newParser(cli *CLI, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("keepgpu"),
		kong.Description("Hold a job's GPUs while it does CPU work; hand them over the moment it is ready."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(c int) { panic(exitCode(c)) }),
		kong.DefaultEnvars("KEEPGPU"),
		// With a resolver, even one that resolves nothing, kong holds a bad
		// KEEPGPU_* variable's error back until it knows whether the flag
		// was given: a flag given wins over its variable, good or bad.
		kong.Resolvers(kong.ResolverFunc(func(*kong.Context, *kong.Path, *kong.Flag) (any, error) { return nil, nil })),
		kong.WithHyphenPrefixedParameters(true), // --busy-threshold -1
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Bind(&stdio{out: stdout, err: stderr}),
	)
}

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// stdio is where commands write; bound into every Run method. name is the
// name keepgpu was invoked as when it is KeepGPU's keep-gpu, else "".
type stdio struct {
	out  io.Writer
	err  io.Writer
	name string
}

// keepGPU reports whether keepgpu runs as KeepGPU's keep-gpu.
func (s *stdio) keepGPU() bool { return s.name == keepGPUName }
