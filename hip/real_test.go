package hip

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebitengine/purego"
	"github.com/keepgpu/keepgpu/internal/dl"
)

// TestRealLibrary loads AMD's own HIP runtime where KEEPGPU_ROCM_LIBS names
// a directory it was unpacked into (and LD_LIBRARY_PATH leads to it), on a
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
		path, _ := filepath.EvalSymlinks(libraryPath(name))
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
		t.Logf("%s (%s): %d entry points, optional ones missing: %v", name, path, len(new(api).entries()), optional)
	})
	t.Run("no device", func(t *testing.T) {
		_, err := Load()
		if !errors.Is(err, ErrorNoDevice) || !strings.Contains(err.Error(), "hipErrorNoDevice") {
			t.Fatalf("Load: %v; want the runtime's hipErrorNoDevice", err)
		}
		t.Logf("Load: %v", err)
	})
}

// libraryPath finds where the dynamic linker took name from, for the log.
func libraryPath(name string) string {
	for _, dir := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
