package rocmsmi

import (
	"errors"
	"testing"
	"unsafe"
)

// listLib simulates a two-call API over a list whose length is counts[i]
// at the i-th call (the last one repeated): with a NULL buffer it reports
// the length; with a buffer it fills what fits and answers
// RSMI_STATUS_INSUFFICIENT_SIZE when the list is longer, reporting how
// many it wrote (or, with reportNeed, how many there were).
type listLib struct {
	counts     []int
	calls      int
	reportNeed bool
}

func (l *listLib) next() int {
	n := l.counts[min(l.calls, len(l.counts)-1)]
	l.calls++
	return n
}

func (l *listLib) call(buf unsafe.Pointer, n *uint32, fill func(i int)) Status {
	have := l.next()
	if buf == nil {
		*n = uint32(have)
		return Success
	}
	k := min(have, int(*n))
	for i := 0; i < k; i++ {
		fill(i)
	}
	if have > int(*n) {
		if l.reportNeed {
			*n = uint32(have)
		} else {
			*n = uint32(k)
		}
		return StatusInsufficient
	}
	*n = uint32(have)
	return Success
}

func TestTwoCallAPIs(t *testing.T) {
	tests := []struct {
		name       string
		counts     []int
		reportNeed bool
		want       int // list length read; -1 for errChanging
	}{
		{"empty", []int{0}, false, 0},
		{"fits the first buffer", []int{3}, false, 3},
		{"longer than the first buffer", []int{20}, false, 20},
		{"grows between the calls", []int{9, 12, 30, 31}, false, 31},
		{"shrinks between the calls", []int{50, 50, 2}, false, 2},
		{"the library reports the count it needed", []int{100}, true, 100},
		{"outgrows every buffer", []int{9, 20, 50, 120, 300, 700, 1600, 4000, 9000, 20000, 50000}, false, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/processes", func(t *testing.T) {
			l := &listLib{counts: tt.counts, reportNeed: tt.reportNeed}
			s := &SMI{}
			s.statusString = func(Status, **byte) Status { return StatusNotSupported }
			s.procInfo = func(procs *processInfo, n *uint32) Status {
				return l.call(unsafe.Pointer(procs), n, func(i int) {
					unsafe.Slice(procs, i+1)[i] = processInfo{PID: uint32(1000 + i)}
				})
			}
			got, err := s.processes()
			check(t, tt.want, len(got), err)
			for i, p := range got {
				if p.PID != uint32(1000+i) {
					t.Fatalf("entry %d has pid %d", i, p.PID)
				}
			}
		})
		t.Run(tt.name+"/gpus", func(t *testing.T) {
			l := &listLib{counts: tt.counts, reportNeed: tt.reportNeed}
			s := &SMI{}
			s.statusString = func(Status, **byte) Status { return StatusNotSupported }
			s.procGPUs = func(pid uint32, idx *uint32, n *uint32) Status {
				return l.call(unsafe.Pointer(idx), n, func(i int) { unsafe.Slice(idx, i+1)[i] = uint32(i) })
			}
			got, err := s.processGPUs(42)
			check(t, tt.want, len(got), err)
		})
	}
}

func check(t *testing.T, want, got int, err error) {
	t.Helper()
	if want < 0 {
		if !errors.Is(err, errChanging) {
			t.Fatalf("read %d entries, %v; want errChanging", got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("read %d entries, %v; want %d", got, err, want)
	}
}
