package dl

import (
	"io"
	"os"
	"sync"
	"syscall"
)

var quietMu sync.Mutex

// Quiet runs f with file descriptor 2 pointing at a pipe and returns what
// was written there. ROCm SMI and AMD SMI write their diagnostics to
// std::cerr; they are not keepgpu's to show. One lock serves both, as
// standard error is one per process. Whatever other goroutines write to
// standard error during f lands there too, so f must be short. If the pipe
// cannot be set up, f runs with standard error untouched.
func Quiet(f func()) string {
	quietMu.Lock()
	defer quietMu.Unlock()
	saved, err := syscall.Dup(2)
	if err != nil {
		f()
		return ""
	}
	defer syscall.Close(saved)
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		f()
		return ""
	}
	r := os.NewFile(uintptr(p[0]), "vendor-stderr")
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		r.Close()
		out <- b
	}()
	if err := syscall.Dup3(p[1], 2, 0); err != nil {
		syscall.Close(p[1])
		<-out
		f()
		return ""
	}
	syscall.Close(p[1])
	func() {
		// Restored even if f panics; this closes the pipe's last write
		// end, so ReadAll returns.
		defer syscall.Dup3(saved, 2, 0)
		f()
	}()
	return string(<-out)
}
