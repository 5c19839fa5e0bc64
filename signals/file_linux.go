package signals

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPoll is the stat poll interval [File] uses when given none.
const DefaultPoll = 200 * time.Millisecond

// inotifyMask selects the parent directory events that can mean the ready
// file appeared, and those that mean the directory itself went away.
const inotifyMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// FileSource fires when its ready file exists. See [File].
type FileSource struct {
	latch
	path string
	dir  string
	base string
	poll time.Duration
	// inotify is the inotify instance watching dir, or nil in poll-only
	// mode. Its fd is nonblocking, so reads go through the runtime poller
	// and honour deadlines and Close.
	inotify *os.File
	wd      int       // watch descriptor of dir in inotify
	unwatch sync.Once // drops wd once the directory went away
	reader  chan struct{}
}

// File returns a source that fires once path exists (any kind of file,
// including a dangling symlink). A relative path is resolved against the
// current directory now. The parent directory must exist.
//
// File watches the parent directory with inotify and, because NFS and Lustre
// deliver no inotify events for changes made on other hosts, also stats path
// every poll (DefaultPoll if poll <= 0); whichever sees the file first wins.
// If inotify is unavailable (for example max_user_instances is exhausted),
// File silently falls back to polling alone. If the parent directory is
// removed or renamed away, the watch is dropped and polling continues, so a
// recreated directory still works.
//
// If path already exists, File returns an error wrapping [ErrStale] that names
// the path: it must be deleted before the command starts. The check is made
// after the watch is armed, so a file created in between is never missed.
// The caller must Close the source to release the inotify instance.
func File(path string, poll time.Duration) (*FileSource, error) {
	return newFile(path, poll, true)
}

// PollFile is File without inotify: it only stats path every poll. It is
// what a file system without change events (NFS, Lustre) gets from File,
// and what `keepgpu wrap --poll-only` asks for.
func PollFile(path string, poll time.Duration) (*FileSource, error) {
	return newFile(path, poll, false)
}

// newFile is File with inotify optional.
func newFile(path string, poll time.Duration, useInotify bool) (*FileSource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ready file %s: %w", path, err)
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	s := &FileSource{
		latch:  newLatch(),
		path:   abs,
		dir:    filepath.Dir(abs),
		base:   filepath.Base(abs),
		poll:   poll,
		reader: make(chan struct{}, 1),
	}
	st, err := os.Stat(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ready file %s: parent directory: %w", abs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("ready file %s: parent %s is not a directory", abs, s.dir)
	}
	if useInotify {
		s.watch()
	}
	exists, err := s.exists()
	if err == nil && exists {
		err = fmt.Errorf("%s: %w; delete it first", abs, ErrStale)
	} else if err != nil {
		err = fmt.Errorf("ready file: %w", err)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// watch arms an inotify watch on s.dir, leaving s in poll-only mode if any
// step fails.
func (s *FileSource) watch() {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return
	}
	wd, err := unix.InotifyAddWatch(fd, s.dir, inotifyMask)
	if err != nil {
		unix.Close(fd)
		return
	}
	s.inotify = os.NewFile(uintptr(fd), "inotify:"+s.dir)
	s.wd = wd
}

// exists reports whether s.path exists. Not existing (yet) is not an error.
func (s *FileSource) exists() (bool, error) {
	_, err := os.Lstat(s.path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
		return false, nil
	}
	return false, err
}

// Name returns "file".
func (s *FileSource) Name() string { return "file" }

// Path returns the absolute path of the ready file.
func (s *FileSource) Path() string { return s.path }

// Wait blocks until the ready file exists, ctx is done or s is closed.
// Errors from the periodic stat (for example a transient NFS ESTALE) are
// retried, not returned.
func (s *FileSource) Wait(ctx context.Context) error {
	if err, ok := s.done(ctx); ok {
		return err
	}
	if s.inotify == nil {
		return s.waitPoll(ctx)
	}
	return s.waitInotify(ctx)
}

// waitPoll is Wait without inotify: a stat every s.poll.
func (s *FileSource) waitPoll(ctx context.Context) error {
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		if ok, _ := s.exists(); ok {
			s.fire()
		}
		if err, ok := s.done(ctx); ok {
			return err
		}
		select {
		case <-tick.C:
		case <-s.fired:
		case <-s.closed:
		case <-ctx.Done():
		}
	}
}

// waitInotify is Wait with inotify: it reads events with a read deadline of
// s.poll, and stats the path on each matching event and on each deadline.
// Cancelling ctx moves the deadline into the past; Close closes the inotify
// file, which wakes the read. Concurrent Waits take turns reading.
func (s *FileSource) waitInotify(ctx context.Context) error {
	release, err := s.acquire(ctx, s.reader)
	if release == nil {
		return err
	}
	defer release()
	stop := wakeOnCancel(ctx, s.inotify)
	defer stop()
	buf := make([]byte, 4096) // holds at least one event with a NAME_MAX name
	for {
		s.inotify.SetReadDeadline(time.Now().Add(s.poll))
		if err, ok := s.done(ctx); ok {
			return err
		}
		n, err := s.inotify.Read(buf)
		if n > 0 && s.handleEvents(buf[:n]) {
			if ok, _ := s.exists(); ok {
				s.fire()
				return nil
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if ok, _ := s.exists(); ok {
				s.fire()
			}
		case errors.Is(err, os.ErrClosed):
			return ErrClosed
		default:
			return fmt.Errorf("ready file %s: read inotify events: %w", s.path, err)
		}
	}
}

// handleEvents parses inotify events and reports whether one of them may
// mean the ready file appeared. If the directory went away it drops the
// watch, leaving the poll in charge.
func (s *FileSource) handleEvents(buf []byte) (maybe bool) {
	for len(buf) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(buf[4:8])
		nameLen := int(binary.NativeEndian.Uint32(buf[12:16]))
		end := min(unix.SizeofInotifyEvent+nameLen, len(buf))
		name := buf[unix.SizeofInotifyEvent:end]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		buf = buf[end:]
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0:
			maybe = true
		case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
			// A renamed directory would report files that are
			// not at s.path; a deleted one reports nothing more.
			s.unwatch.Do(func() {
				// Control, unlike Fd, keeps the fd nonblocking
				// and open while in use.
				rc, err := s.inotify.SyscallConn()
				if err == nil {
					rc.Control(func(fd uintptr) { unix.InotifyRmWatch(int(fd), uint32(s.wd)) })
				}
			})
			maybe = true
		case string(name) == s.base:
			maybe = true
		}
	}
	return maybe
}

// Close releases the inotify instance and makes Wait return. It is safe to
// call twice and concurrently with Wait.
func (s *FileSource) Close() error {
	if !s.close() || s.inotify == nil {
		return nil
	}
	if err := s.inotify.Close(); err != nil {
		return fmt.Errorf("ready file %s: close inotify: %w", s.path, err)
	}
	return nil
}

// wakeOnCancel makes reads on f fail with os.ErrDeadlineExceeded once ctx is
// done. The returned stop must be called before the next wakeOnCancel on f;
// it waits for a wake-up that already started, so none leaks into a later
// read.
func wakeOnCancel(ctx context.Context, f *os.File) (stop func()) {
	woke := make(chan struct{})
	stopWake := context.AfterFunc(ctx, func() {
		f.SetReadDeadline(time.Unix(1, 0))
		close(woke)
	})
	return func() {
		if !stopWake() {
			<-woke
		}
	}
}
