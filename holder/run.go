package holder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/signals"
)

// Config is one run of a holder.
type Config struct {
	Spec
	// MaxHold releases the GPUs after this long; 0 never.
	MaxHold time.Duration
	// Until are sources whose first signal releases the GPUs; the caller
	// closes them.
	Until []signals.Source
	// Supervised is set in a holder a supervisor started (Start; Log then
	// writes JSON on stdout). Any failure to hold is reported as an Error
	// event; the Holding message leaves out how to release, which the
	// supervisor knows better; and a broken pipe to a supervisor that died
	// does not kill the holder before its parent-death SIGTERM releases the
	// GPUs.
	Supervised bool
	// Log receives the events; nil writes text on stderr.
	Log *Log
}

// ErrReported is returned by Run when the holder failed and its events
// said why already: the holder exits 1 with no more words.
var ErrReported = errors.New("holder failed")

// Run holds the GPUs until SIGINT or SIGTERM, cfg.MaxHold, a source of
// cfg.Until, or the wrapped tree using a GPU, then releases every GPU and
// returns nil: a release is a success. A SIGINT or SIGTERM while the GPUs
// are being taken is acted on once they are held, so that they are
// released explicitly; a second one returns at once (the driver takes back
// whatever an exiting process held). Failing to hold is an error.
func Run(cfg Config) error {
	log := cfg.Log
	if log == nil {
		log = NewLog(os.Stderr, false, false)
	}
	if cfg.Supervised {
		signal.Ignore(syscall.SIGPIPE)
	}
	// Signals first: a SIGTERM that comes while the driver loads must not
	// be lost (nor kill the holder before it can say why it went).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	opt := cfg.options()
	treeUse := make(chan int, 1)
	if root := cfg.TreeOf; root > 0 {
		opt.Own = func(pid int) bool { return descends(pid, root) }
		opt.TreeUse = func(pid int) {
			select {
			case treeUse <- pid:
			default:
			}
		}
	}
	// A keeper may see the wrapped tree use its GPU before every GPU is
	// held: its tree-use event waits for the holding event, so that the
	// stream always says "holding" before what ends the hold.
	var evMu sync.Mutex
	holding := false
	var early []keeper.Event
	opt.Events = func(e keeper.Event) {
		evMu.Lock()
		defer evMu.Unlock()
		if !holding && Kind(e.Kind) == TreeUse {
			early = append(early, e)
			return
		}
		log.keeper(e, cfg.Util)
	}

	type started struct {
		g   *keeper.Group
		err error
	}
	startc := make(chan started, 1)
	go func() {
		g, err := keeper.Hold(context.Background(), cfg.GPUs, opt)
		startc <- started{g, err}
	}()
	var pending os.Signal
	var r started
	for waiting := true; waiting; {
		select {
		case s := <-sigs:
			if pending != nil {
				log.report(Event{Kind: Released, GPU: -1, Reason: signals.Name(s),
					Message: "released while starting (" + signals.Name(s) + ")"})
				return nil
			}
			pending = s
		case r = <-startc:
			waiting = false
		}
	}
	if r.err != nil {
		if cfg.Supervised || errors.Is(r.err, keeper.ErrNoGPU) {
			log.report(Event{Kind: Error, GPU: -1, Message: r.err.Error()})
			return ErrReported
		}
		return r.err
	}
	g := r.g
	held := g.Status()
	msg := holdingLine(held, cfg.Util)
	if !cfg.Supervised {
		msg += "; release with Ctrl+C or SIGTERM"
	}
	log.report(Event{Kind: Holding, GPU: -1, Message: msg, GPUs: held})
	evMu.Lock()
	holding = true
	for _, e := range early {
		log.keeper(e, cfg.Util)
	}
	evMu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan signals.Source, 1)
	if len(cfg.Until) > 0 {
		go func() {
			if s, err := signals.First(ctx, cfg.Until...); err == nil {
				fired <- s
			}
		}()
	}
	var maxHold <-chan time.Time
	if cfg.MaxHold > 0 {
		maxHold = time.After(cfg.MaxHold)
	}
	var why string
	select {
	case s := <-signalOr(sigs, pending):
		why = signals.Name(s)
	case <-maxHold:
		why = "--max-hold " + cfg.MaxHold.String()
	case s := <-fired:
		why = "--until-" + s.Name()
	case pid := <-treeUse:
		why = fmt.Sprintf("the wrapped command uses the GPU (pid %d)", pid)
	}
	t := time.Now()
	err := g.Release()
	e := Event{Kind: Released, GPU: -1, Reason: why, HeldSeconds: g.Held().Seconds(),
		ReleaseMS: float64(time.Since(t).Microseconds()) / 1000}
	if err != nil {
		e.Kind, e.Message = Error, "release: "+err.Error()
		log.report(e)
		return ErrReported
	}
	e.Message = fmt.Sprintf("released %d GPU%s after %s (%s)", len(held), plural(len(held)), g.Held().Round(time.Millisecond), why)
	log.report(e)
	return nil
}

// holdingLine is the one line that says what a holder holds:
// "holding 2 GPUs: gpu 0 (GPU-…, NVIDIA H200) 2.0 GiB, gpu 1 (…) 2.0 GiB; kernel at 30%".
// A Holding event of a supervised holder carries it as its message.
func holdingLine(held []keeper.Status, util int) string {
	parts := make([]string, len(held))
	for i, s := range held {
		parts[i] = fmt.Sprintf("gpu %d (%s, %s) %s", s.GPU, s.UUID, s.Name, cuda.FormatBytes(s.Bytes))
	}
	return fmt.Sprintf("holding %d GPU%s: %s; %s", len(held), plural(len(held)), strings.Join(parts, ", "),
		kernelWords(util, "kernel at %d%%"))
}

// signalOr returns sigs, or a channel that already holds pending.
func signalOr(sigs chan os.Signal, pending os.Signal) <-chan os.Signal {
	if pending == nil {
		return sigs
	}
	c := make(chan os.Signal, 1)
	c <- pending
	return c
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
