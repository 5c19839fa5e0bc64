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
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/wrap"
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
	name := filepath.Base(os.Args[0])
	std := &stdio{out: stdout, err: stderr}
	// version, relay and the holders this binary starts of itself keep
	// keepgpu's forms, and its fast start, as keep-gpu too.
	if name != keepGPUMCPName {
		if f := direct(args, std); f != nil {
			return status(f(), stderr)
		}
	}
	if name == keepGPUName || name == keepGPUMCPName {
		return runAsKeepGPU(name, args, stdout, stderr) // KeepGPU's CLI: keepgpuname.go
	}
	var cli CLI
	if len(args) > 0 && args[0] == "wrap" {
		std.signals = wrap.CatchSignals() // arms while the flags are parsed
	}
	parser, err := commandParser(args, std)
	if parser == nil && err == nil {
		parser, err = kong.New(&cli, parserOptions(std)...)
	}
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
	return status(ctx.Run(), stderr)
}

// status is the exit status for err, what a command's Run returned; an
// error is reported on stderr.
func status(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
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

// direct returns the Run of a command line that must start fast and
// needs no parser: `keepgpu version`; `keepgpu relay`, wrap's output
// relay; and the holder a supervisor starts, whose command line
// holder.Spec.Args wrote and holder.ParseArgs reads, in an environment
// that sets none of hold's flags (holder.Env leaves no KEEPGPU_*
// variable). It returns nil for anything else, which kong parses; kong
// would run these the same way (TestDirect).
func direct(args []string, io *stdio) func() error {
	if len(args) == 1 {
		switch args[0] {
		case "version":
			return func() error { return VersionCmd{}.Run(io) }
		case "relay":
			return (&RelayCmd{}).Run
		}
	}
	if spec, ok := holder.ParseArgs(args); ok && !holdEnv() {
		c := supervisedHold(spec)
		return func() error { return c.Run(io, nil) } // a supervised holder reads no kong context
	}
	return nil
}

// holdEnv reports whether a variable that kong reads for one of hold's
// flags is set: KEEPGPU_*, or one that a flag's env tag names
// (KEEP_GPU_PLATFORM).
func holdEnv() bool {
	var tagged []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			} else if env := f.Tag.Get("env"); env != "" && env != "-" {
				tagged = append(tagged, strings.Split(env, ",")...)
			}
		}
	}
	walk(reflect.TypeFor[HoldCmd]())
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KEEPGPU_") || slices.Contains(tagged, k) {
			return true
		}
	}
	return false
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
	return kong.New(cli, parserOptions(&stdio{out: stdout, err: stderr})...)
}

// commandParser builds the parser of the one command args starts with, or
// returns nil where args does not start with a command's name (the default
// command's flags, --help, a typo): those need the whole CLI. kong builds
// its model by reflecting on every command, flag and help text of the
// struct it is given, which costs about a millisecond at each start; the
// model of one command, a struct of that one field of CLI with its tags,
// costs a fifth of that and parses that command's lines alike
// (TestCommandParser).
func commandParser(args []string, io *stdio) (*kong.Kong, error) {
	if len(args) == 0 {
		return nil, nil
	}
	t := reflect.TypeFor[CLI]()
	for i := range t.NumField() {
		f := t.Field(i)
		if _, ok := f.Tag.Lookup("cmd"); ok && commandName(f) == args[0] {
			one := reflect.New(reflect.StructOf([]reflect.StructField{f}))
			return kong.New(one.Interface(), parserOptions(io)...)
		}
	}
	return nil, nil
}

// commandName is the name kong gives the command of CLI's field f.
func commandName(f reflect.StructField) string {
	if n := f.Tag.Get("name"); n != "" {
		return n
	}
	return strings.ToLower(f.Name)
}

// parserOptions are the options of keepgpu's command-line parser, which
// binds io into every Run method.
func parserOptions(io *stdio) []kong.Option {
	return []kong.Option{
		kong.Name("keepgpu"),
		kong.Description("Hold a job's GPUs while it does CPU work; hand them over the moment it is ready."),
		kong.Writers(io.out, io.err),
		kong.Exit(func(c int) { panic(exitCode(c)) }),
		kong.DefaultEnvars("KEEPGPU"),
		// With a resolver, even one that resolves nothing, kong holds a bad
		// KEEPGPU_* variable's error back until it knows whether the flag
		// was given: a flag given wins over its variable, good or bad.
		kong.Resolvers(kong.ResolverFunc(func(*kong.Context, *kong.Path, *kong.Flag) (any, error) { return nil, nil })),
		kong.WithHyphenPrefixedParameters(true), // --busy-threshold -1
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Bind(io),
	}
}

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// stdio is where commands write; bound into every Run method. name is the
// name keepgpu was invoked as when it is KeepGPU's keep-gpu, else "".
type stdio struct {
	out  io.Writer
	err  io.Writer
	name string
	// signals is keepgpu wrap's catch of every signal, started before its
	// flags are parsed; nil for every other command.
	signals *wrap.Catch
}

// keepGPU reports whether keepgpu runs as KeepGPU's keep-gpu.
func (s *stdio) keepGPU() bool { return s.name == keepGPUName }
