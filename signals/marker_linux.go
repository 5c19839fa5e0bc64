package signals

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// relayChunk is the most one tee(2) or splice(2) moves: a whole pipe of the
// size wrap asks for.
const relayChunk = 1 << 20

// errDstFull reports that a tee or splice found src with data but dst
// full: the wait is for dst.
var errDstFull = errors.New("destination full")

// copyFiles is Copy's kernel path for a pipe src. It reports done = false,
// having copied nothing, where it cannot help (src not a pipe); Copy then
// reads and writes. Into a pipe, each chunk is duplicated into dst with
// tee(2) and then read from src only to be scanned; into anything else
// it reads and writes until the match. After the match it splices.
//
// Every wait for src goes through the runtime's poller, as a Read would,
// so closing src wakes the copy: it then returns an error, having written
// out what it took from src and left the rest there. A wait for room in
// dst is a poll(2) on this thread.
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
	// dst stays open for the whole copy; src is held only inside each
	// step (see fromSrc).
	var rerr error
	err = dc.Control(func(d uintptr) { rerr = m.relay(sc, int(d), dst) })
	if rerr == nil {
		rerr = err
	}
	return true, rerr
}

// relay scans until the match, with tee(2) into a pipe and read and write
// into anything else, then splices the rest. A pipe dst smaller than
// relayChunk is grown to it, as wrap grows its own pipes: each wake-up then
// moves up to 1 MiB instead of 64 KiB, which on a pipe to a fast reader
// takes a third off the relay's CPU time. The bytes and their order are
// the same; where the kernel refuses (pipe-max-size, the user's pipe
// quota), nothing changes.
func (m *MarkerSource) relay(sc syscall.RawConn, dfd int, dst *os.File) error {
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
		err = m.teeScan(sc, dfd)
	default:
		err = m.readScan(sc, dst)
	}
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	return spliceAll(sc, dfd, dst)
}

// isPipe reports whether f is a pipe or FIFO.
func isPipe(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}

// fromSrc runs op on src's descriptor, which it holds open meanwhile (a
// Close of src waits for op), until op reports something other than
// EAGAIN or EINTR. On EAGAIN it waits in the runtime's poller for src to
// become readable. If src has data already, the data either arrived just
// after op looked, or (when toDst, op writing into dst) dst is full: a
// plain read is tried again, and an op into dst returns errDstFull for the
// caller to wait for dst (which returns at once if dst has room, and the
// caller tries again). A closed src ends it with the poller's error.
func fromSrc(sc syscall.RawConn, toDst bool, op func(sfd int) (int, error)) (n int, err error) {
	rerr := sc.Read(func(s uintptr) bool {
		for {
			n, err = op(int(s))
			if err == unix.EINTR {
				continue
			}
			if err != unix.EAGAIN {
				return true
			}
			if !readable(int(s)) {
				return false
			}
			if toDst {
				err = errDstFull
				return true
			}
		}
	})
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

// readable reports whether fd has data (or a hang-up) now.
func readable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// teeScan duplicates src into the pipe dst chunk by chunk with tee(2), then
// reads the same bytes from src and scans them, until the marker is seen
// (nil) or src ends (io.EOF).
func (m *MarkerSource) teeScan(sc syscall.RawConn, dfd int) error {
	var scn scanner
	buf := make([]byte, relayChunk)
	for !m.done() {
		// The tee and the read of what it duplicated are one step: a Close
		// of src between them would send those bytes twice.
		n, err := fromSrc(sc, true, func(sfd int) (int, error) {
			n, err := unix.Tee(sfd, dfd, len(buf), unix.SPLICE_F_NONBLOCK)
			if err != nil || n == 0 {
				return int(n), err
			}
			// The n bytes are at the head of src, ours alone to read.
			for got := 0; got < int(n); {
				k, err := unix.Read(sfd, buf[got:n])
				if err == unix.EINTR {
					continue
				}
				if err != nil || k == 0 {
					return 0, &os.PathError{Op: "read", Path: "marker relay", Err: errors.Join(err, io.ErrUnexpectedEOF)}
				}
				got += k
			}
			return int(n), nil
		})
		switch {
		case err == errDstFull:
			if err := waitFor(dfd, unix.POLLOUT); err != nil {
				return err
			}
			continue
		case err != nil:
			return relayError("tee", err)
		case n == 0:
			return io.EOF
		}
		m.scan(&scn, buf[:n])
	}
	return nil
}

// readScan reads src and writes dst (a terminal, a file...) until the
// marker is seen (nil) or src ends (io.EOF).
func (m *MarkerSource) readScan(sc syscall.RawConn, dst *os.File) error {
	var scn scanner
	buf := make([]byte, 256*1024)
	for !m.done() {
		n, err := fromSrc(sc, false, func(sfd int) (int, error) { return unix.Read(sfd, buf) })
		switch {
		case err != nil:
			return relayError("read", err)
		case n == 0:
			return io.EOF
		}
		if err := writeAll(dst, buf[:n]); err != nil {
			return err
		}
		m.scan(&scn, buf[:n])
	}
	return nil
}

// spliceAll moves the rest of src into dst with splice(2), no byte passing
// through user space, until src ends. Where dst takes no splice (a
// terminal, a file opened for appending) it reads and writes.
func spliceAll(sc syscall.RawConn, dfd int, dst *os.File) error {
	moved := false
	for {
		n, err := fromSrc(sc, true, func(sfd int) (int, error) {
			n, err := unix.Splice(sfd, nil, dfd, nil, relayChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return int(n), err
		})
		switch {
		case err == errDstFull:
			if err := waitFor(dfd, unix.POLLOUT); err != nil {
				return err
			}
			continue
		case err == unix.EINVAL && !moved:
			return copyRest(sc, dst)
		case err != nil:
			return relayError("splice", err)
		case n == 0:
			return nil
		}
		moved = true
	}
}

// copyRest reads src and writes dst until src ends.
func copyRest(sc syscall.RawConn, dst *os.File) error {
	buf := make([]byte, 256*1024)
	for {
		n, err := fromSrc(sc, false, func(sfd int) (int, error) { return unix.Read(sfd, buf) })
		switch {
		case err != nil:
			return relayError("read", err)
		case n == 0:
			return nil
		}
		if err := writeAll(dst, buf[:n]); err != nil {
			return err
		}
	}
}

// relayError wraps a system call's error number; other errors (the
// poller's, a read's already wrapped) pass as they are.
func relayError(op string, err error) error {
	if errno, ok := err.(unix.Errno); ok {
		return &os.PathError{Op: op, Path: "marker relay", Err: errno}
	}
	return err
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
