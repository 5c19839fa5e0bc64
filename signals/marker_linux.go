package signals

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// relayChunk is the most one tee(2) or splice(2) moves: a whole pipe of the
// size wrap asks for.
const relayChunk = 1 << 20

// copyFiles is Copy's kernel path for a pipe src. It reports done = false,
// having copied nothing, where it cannot help (src not a pipe); Copy then
// reads and writes. Into a pipe, each chunk is duplicated into dst with
// tee(2) and then read from src only to be scanned; into anything else
// it reads and writes until the match. After the match it splices.
func (m *MarkerSource) copyFiles(dst, src *os.File) (done bool, err error) {
	if !isPipe(src) {
		return false, nil
	}
	sc, err := src.SyscallConn()
	if err != nil {
		return false, nil
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return false, nil
	}
	// Control holds both descriptors open for the whole copy; the blocking
	// is done by poll(2) on this thread, never by the runtime's poller,
	// whose edge-triggered wake-ups cannot wait for "src readable and dst
	// writable" at once.
	var cerr error
	err = sc.Control(func(s uintptr) {
		err := dc.Control(func(d uintptr) {
			cerr = m.relay(int(s), int(d), dst)
		})
		if cerr == nil {
			cerr = err
		}
	})
	if cerr == nil {
		cerr = err
	}
	return true, cerr
}

// relay scans until the match, with tee(2) into a pipe and read and write
// into anything else, then splices the rest. A pipe dst smaller than
// relayChunk is grown to it, as wrap grows its own pipes: each wake-up then
// moves up to 1 MiB instead of 64 KiB, which on a pipe to a fast reader
// takes a third off the relay's CPU time. The bytes and their order are
// the same; where the kernel refuses (pipe-max-size, the user's pipe
// quota), nothing changes.
func (m *MarkerSource) relay(sfd, dfd int, dst *os.File) error {
	dstPipe := isPipe(dst)
	if dstPipe {
		if n, err := unix.FcntlInt(uintptr(dfd), unix.F_GETPIPE_SZ, 0); err == nil && n < relayChunk {
			unix.FcntlInt(uintptr(dfd), unix.F_SETPIPE_SZ, relayChunk)
		}
	}
	var err error
	switch {
	case m.done():
	case dstPipe:
		err = m.teeScan(sfd, dfd)
	default:
		err = m.readScan(sfd, dst)
	}
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	return spliceAll(sfd, dfd, dst)
}

// isPipe reports whether f is a pipe or FIFO.
func isPipe(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}

// teeScan duplicates src into the pipe dst chunk by chunk with tee(2), then
// reads the same bytes from src and scans them, until the marker is seen
// (nil) or src ends (io.EOF).
func (m *MarkerSource) teeScan(sfd, dfd int) error {
	var sc scanner
	buf := make([]byte, relayChunk)
	for !m.done() {
		n, err := unix.Tee(sfd, dfd, len(buf), unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := waitBoth(sfd, dfd); err != nil {
				return err
			}
			continue
		case err != nil:
			return &os.PathError{Op: "tee", Path: "marker relay", Err: err}
		case n == 0:
			return io.EOF
		}
		// The n bytes are at the head of src, ours alone to read.
		for got := 0; got < int(n); {
			k, err := unix.Read(sfd, buf[got:n])
			if err == unix.EINTR {
				continue
			}
			if err != nil || k == 0 {
				return &os.PathError{Op: "read", Path: "marker relay", Err: errors.Join(err, io.ErrUnexpectedEOF)}
			}
			got += k
		}
		m.scan(&sc, buf[:n])
	}
	return nil
}

// readScan reads src and writes dst (a terminal, a file...) until the
// marker is seen (nil) or src ends (io.EOF).
func (m *MarkerSource) readScan(sfd int, dst *os.File) error {
	var sc scanner
	buf := make([]byte, 256*1024)
	for !m.done() {
		n, err := unix.Read(sfd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := waitFor(sfd, unix.POLLIN); err != nil {
				return err
			}
			continue
		case err != nil:
			return &os.PathError{Op: "read", Path: "marker relay", Err: err}
		case n == 0:
			return io.EOF
		}
		if err := writeAll(dst, buf[:n]); err != nil {
			return err
		}
		m.scan(&sc, buf[:n])
	}
	return nil
}

// spliceAll moves the rest of src into dst with splice(2), no byte passing
// through user space, until src ends. Where dst takes no splice (a
// terminal, a file opened for appending) it reads and writes.
func spliceAll(sfd, dfd int, dst *os.File) error {
	moved := false
	for {
		n, err := unix.Splice(sfd, nil, dfd, nil, relayChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := waitBoth(sfd, dfd); err != nil {
				return err
			}
			continue
		case err == unix.EINVAL && !moved:
			return copyRest(sfd, dst)
		case err != nil:
			return &os.PathError{Op: "splice", Path: "marker relay", Err: err}
		case n == 0:
			return nil
		}
		moved = true
	}
}

// copyRest reads src and writes dst until src ends.
func copyRest(sfd int, dst *os.File) error {
	buf := make([]byte, 256*1024)
	for {
		n, err := unix.Read(sfd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := waitFor(sfd, unix.POLLIN); err != nil {
				return err
			}
			continue
		case err != nil:
			return &os.PathError{Op: "read", Path: "marker relay", Err: err}
		case n == 0:
			return nil
		}
		if err := writeAll(dst, buf[:n]); err != nil {
			return err
		}
	}
}

// waitBoth blocks until src has data (or its writers are gone) and then
// until dst has room (or its readers are gone): a non-blocking tee or
// splice between two pipes fails with EAGAIN for either reason.
func waitBoth(sfd, dfd int) error {
	if err := waitFor(sfd, unix.POLLIN); err != nil {
		return err
	}
	return waitFor(dfd, unix.POLLOUT)
}

// waitFor blocks in poll(2) until fd is ready for events or reports an
// error or hang-up; the next read or write then says which.
func waitFor(fd int, events int16) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "poll", Path: "marker relay", Err: err}
			}
			return nil
		}
	}
}
