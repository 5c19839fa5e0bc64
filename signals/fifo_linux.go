package signals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// FIFOSource fires when a complete line is written to its FIFO. See [FIFO].
type FIFOSource struct {
	latch
	path    string
	created bool     // FIFO made the FIFO, so Close removes it
	f       *os.File // opened read-write, so it never sees EOF
	reader  chan struct{}
}

// FIFO returns a source that fires when a complete, newline-terminated line
// is written to the named pipe at path, for example by
//
//	echo ready > "$KEEPGPU_FIFO"
//
// FIFO creates the pipe with mode 0600 if path does not exist; an existing
// file that is not a FIFO is an error. It opens the pipe for reading and
// writing, so writers never block in open or write (up to the pipe buffer)
// and writers closing never looks like EOF. Bytes without a newline are kept
// waiting: a writer that writes "rea" and closes fires nothing until some
// writer sends the newline.
//
// Once fired, the pipe is read no more. The caller must Close the source,
// which closes the pipe and removes it if FIFO created it. Keep the source
// open until the command exits: a writer that opens a FIFO that nobody holds
// open blocks.
func FIFO(path string) (*FIFOSource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ready fifo %s: %w", path, err)
	}
	s := &FIFOSource{latch: newLatch(), path: abs, reader: make(chan struct{}, 1)}
	switch st, err := os.Lstat(abs); {
	case errors.Is(err, fs.ErrNotExist):
		if err := unix.Mkfifo(abs, 0o600); err != nil {
			return nil, fmt.Errorf("ready fifo: mkfifo %s: %w", abs, err)
		}
		s.created = true
		// The umask may have taken bits away; put exactly 0600 back.
		if err := os.Chmod(abs, 0o600); err != nil {
			os.Remove(abs)
			return nil, fmt.Errorf("ready fifo: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("ready fifo: %w", err)
	case st.Mode().Type() != fs.ModeNamedPipe:
		return nil, fmt.Errorf("ready fifo %s: exists and is not a FIFO (it is %s); remove it or choose another path", abs, kindOf(st.Mode()))
	}
	// O_RDWR on a FIFO never blocks on Linux, and the os package puts the
	// pipe into nonblocking mode on the runtime poller, so reads honour
	// deadlines and Close.
	s.f, err = os.OpenFile(abs, os.O_RDWR, 0)
	if err != nil {
		if s.created {
			os.Remove(abs)
		}
		return nil, fmt.Errorf("ready fifo: %w", err)
	}
	return s, nil
}

// Name returns "fifo".
func (s *FIFOSource) Name() string { return "fifo" }

// Path returns the absolute path of the FIFO.
func (s *FIFOSource) Path() string { return s.path }

// Wait blocks until a newline has been read from the FIFO, ctx is done or s
// is closed. Cancelling ctx wakes the read through a read deadline;
// concurrent Waits take turns reading.
func (s *FIFOSource) Wait(ctx context.Context) error {
	release, err := s.acquire(ctx, s.reader)
	if release == nil {
		return err
	}
	defer release()
	s.f.SetReadDeadline(time.Time{})
	stop := wakeOnCancel(ctx, s.f)
	defer stop()
	buf := make([]byte, 4096)
	for {
		if err, ok := s.done(ctx); ok {
			return err
		}
		n, err := s.f.Read(buf)
		// Only the newline matters; the bytes before it need no keeping.
		if bytes.IndexByte(buf[:n], '\n') >= 0 {
			s.fire()
			return nil
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, os.ErrClosed):
			return ErrClosed
		default:
			return fmt.Errorf("ready fifo %s: read: %w", s.path, err)
		}
	}
}

// Close closes the FIFO, removes it if [FIFO] created it and makes Wait
// return. It is safe to call twice and concurrently with Wait.
func (s *FIFOSource) Close() error {
	if !s.close() {
		return nil
	}
	err := s.f.Close()
	if s.created {
		if rmErr := os.Remove(s.path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = errors.Join(err, rmErr)
		}
	}
	if err != nil {
		return fmt.Errorf("ready fifo %s: close: %w", s.path, err)
	}
	return nil
}
