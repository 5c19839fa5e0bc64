// Package dl opens vendor libraries at run time through purego and binds
// their entry points to Go functions: the one place keepgpu's loaders for
// libcuda, NVML, HIP and ROCm SMI do so.
package dl

import (
	"errors"
	"runtime"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
)

var (
	mu      sync.Mutex
	handles = map[string]uintptr{}
)

// Open opens the first of names that loads, with RTLD_NOW|RTLD_LOCAL. A
// library is opened once per process and its handle reused: the vendor
// libraries count their own init and shutdown calls, and are never closed.
// A library that failed to load is tried again on the next call. The error
// carries the dynamic linker's reason for each name, joined by "; ".
func Open(names ...string) (h uintptr, name string, err error) {
	mu.Lock()
	defer mu.Unlock()
	// dlerror is per thread: keep dlopen and dlerror on one, or the reason
	// why a library did not load is lost.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var why []string
	for _, name := range names {
		if h, ok := handles[name]; ok {
			return h, name, nil
		}
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err == nil {
			handles[name] = h
			return h, name, nil
		}
		why = append(why, err.Error())
	}
	return 0, "", errors.New(strings.Join(why, "; "))
}

// Symbol is an entry point: its exported name and a pointer to the Go
// function variable it is bound to. An Optional symbol may be missing.
type Symbol struct {
	Name     string
	Fn       any
	Optional bool
}

// Bind binds each symbol h exports to its Fn and returns the names of the
// required symbols h lacks, all of them, so that an error can name every
// one at once. An optional symbol that is missing leaves its Fn nil.
func Bind(h uintptr, syms []Symbol) (missing []string) {
	for _, s := range syms {
		addr, err := purego.Dlsym(h, s.Name)
		if err != nil || addr == 0 {
			if !s.Optional {
				missing = append(missing, s.Name)
			}
			continue
		}
		purego.RegisterFunc(s.Fn, addr)
	}
	return missing
}
