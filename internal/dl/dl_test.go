package dl

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestOpen(t *testing.T) {
	_, _, err := Open("libkeepgpu-none-1.so", "libkeepgpu-none-2.so")
	if err == nil || !strings.Contains(err.Error(), "libkeepgpu-none-1.so") || !strings.Contains(err.Error(), "; ") ||
		!strings.Contains(err.Error(), "libkeepgpu-none-2.so") {
		t.Fatalf("Open of two missing libraries = %v, want both reasons", err)
	}
	h1, name, err := Open("libkeepgpu-none-1.so", "libc.so.6")
	if err != nil || name != "libc.so.6" {
		t.Fatalf("Open = %q, %v; want libc.so.6", name, err)
	}
	if h2, _, _ := Open("libc.so.6"); h2 != h1 {
		t.Fatalf("second Open gave handle %#x, first %#x", h2, h1)
	}
}

func TestBind(t *testing.T) {
	h, _, err := Open("libc.so.6")
	if err != nil {
		t.Fatal(err)
	}
	var getpid, optional, required func() int32
	missing := Bind(h, []Symbol{
		{Name: "getpid", Fn: &getpid},
		{Name: "keepgpu_no_such_symbol_1", Fn: &optional, Optional: true},
		{Name: "keepgpu_no_such_symbol_2", Fn: &required},
	})
	if !slices.Equal(missing, []string{"keepgpu_no_such_symbol_2"}) {
		t.Fatalf("missing = %v, want the required one only", missing)
	}
	if getpid == nil || getpid() <= 0 || optional != nil {
		t.Fatalf("getpid bound: %v, optional left nil: %v", getpid != nil, optional == nil)
	}
}

// Quiet hands back what was written to file descriptor 2 during f, and
// puts the descriptor back afterwards.
func TestQuiet(t *testing.T) {
	before, err := os.Stat("/proc/self/fd/2")
	if err != nil {
		t.Skip(err)
	}
	got := Quiet(func() { syscall.Write(2, []byte("chatter from the library\n")) })
	if got != "chatter from the library\n" {
		t.Errorf("Quiet caught %q", got)
	}
	after, err := os.Stat("/proc/self/fd/2")
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("standard error not restored: %v", err)
	}
}

func TestCStrings(t *testing.T) {
	for b, want := range map[string]string{"Fake GPU\x00junk": "Fake GPU", "no terminator": "no terminator", "\x00": "", "": ""} {
		if got := CString([]byte(b)); got != want {
			t.Errorf("CString(%q) = %q, want %q", b, got, want)
		}
	}
	c := []byte("GPU-1\x00")
	if got := GoString(&c[0]); got != "GPU-1" {
		t.Errorf("GoString = %q", got)
	}
	if got := GoString(nil); got != "" {
		t.Errorf("GoString(nil) = %q", got)
	}
}
