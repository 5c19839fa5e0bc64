package rocmsmi

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/ebitengine/purego"
	"github.com/keepgpu/keepgpu/internal/dl"
)

// TestRealLibrary loads AMD's own ROCm SMI where KEEPGPU_ROCM_LIBS names a
// directory it was unpacked into (and LD_LIBRARY_PATH leads to it), on a
// machine without an AMD GPU, as scripts/rocm-test.sh does.
func TestRealLibrary(t *testing.T) {
	if os.Getenv("KEEPGPU_ROCM_LIBS") == "" {
		t.Skip("KEEPGPU_ROCM_LIBS is not set (scripts/rocm-test.sh sets it)")
	}
	t.Run("symbols", func(t *testing.T) {
		h, name, err := dl.Open(LibraryNames...)
		if err != nil {
			t.Fatal(err)
		}
		var missing, optional []string
		for _, e := range new(api).entries() {
			if addr, err := purego.Dlsym(h, e.Name); err != nil || addr == 0 {
				if e.Optional {
					optional = append(optional, e.Name)
				} else {
					missing = append(missing, e.Name)
				}
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s lacks %s", name, strings.Join(missing, ", "))
		}
		t.Logf("%s: %d entry points, optional ones missing: %v", name, len(new(api).entries()), optional)
	})
	t.Run("no device", func(t *testing.T) {
		f, err := os.CreateTemp(t.TempDir(), "stderr")
		if err != nil {
			t.Fatal(err)
		}
		saved, _ := syscall.Dup(2)
		syscall.Dup3(int(f.Fd()), 2, 0)
		s, err := Open()
		var n int
		var procsErr error
		if err == nil {
			n, _ = s.DeviceCount()
			_, procsErr = s.processes()
			s.Close()
		}
		syscall.Dup3(saved, 2, 0)
		syscall.Close(saved)
		leaked, _ := os.ReadFile(f.Name())

		switch {
		case errors.Is(err, StatusInitError):
			t.Logf("Open: %v", err)
		case err == nil && n == 0:
			t.Logf("Open: no error, 0 devices; process list: %v", procsErr)
		default:
			t.Errorf("Open: %v, %d devices; want RSMI_STATUS_INIT_ERROR or no device", err, n)
		}
		if len(leaked) > 0 && err != nil {
			t.Errorf("ROCm SMI wrote to standard error past keepgpu: %q", leaked)
		} else if len(leaked) > 0 {
			t.Logf("written to standard error by calls after init: %q", leaked)
		}
	})
}
