package holder

import (
	"slices"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

func mustVRAM(t *testing.T, s string) keeper.VRAM {
	t.Helper()
	v, err := keeper.ParseVRAM(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSpecArgs checks the holder's command line: every setting told
// explicitly, the optional ones only when set.
func TestSpecArgs(t *testing.T) {
	gpus, err := keeper.ParseGPUs("1,GPU-abc")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{
			name: "defaults",
			spec: Spec{GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(t, "1GiB"), Util: 30, BusyThreshold: 25, Interval: 2 * time.Second},
			want: []string{"hold", "--supervised", "--gpus", "all", "--vram", "1GiB", "--util", "30", "--busy-threshold", "25", "--interval", "2s"},
		},
		{
			name: "everything",
			spec: Spec{GPUs: gpus, VRAM: mustVRAM(t, "50%"), Util: 0, BusyThreshold: -1, Interval: 500 * time.Millisecond, AllowPartial: true, TreeOf: 4242},
			want: []string{"hold", "--supervised", "--gpus", "1,GPU-abc", "--vram", "50%", "--util", "0", "--busy-threshold", "-1", "--interval", "500ms",
				"--allow-partial", "--tree-of", "4242"},
		},
		{
			name: "max",
			spec: Spec{GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(t, "max"), Util: 100, BusyThreshold: 100, Interval: 5 * time.Minute},
			want: []string{"hold", "--supervised", "--gpus", "all", "--vram", "max", "--util", "100", "--busy-threshold", "100", "--interval", "5m0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.Args(); !slices.Equal(got, tt.want) {
				t.Errorf("Args() = %q\nwant      %q", got, tt.want)
			}
		})
	}
}

// TestEnv drops exactly the KEEPGPU_* settings.
func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"empty", nil, []string{}},
		{"kept", []string{"PATH=/bin", "HOME=/h"}, []string{"PATH=/bin", "HOME=/h"}},
		{"dropped", []string{"KEEPGPU_VRAM=2GiB", "PATH=/bin", "KEEPGPU_READY=/s", "CUDA_VISIBLE_DEVICES=1"}, []string{"PATH=/bin", "CUDA_VISIBLE_DEVICES=1"}},
		{"prefix only", []string{"MY_KEEPGPU_X=1", "KEEPGPUX=2"}, []string{"MY_KEEPGPU_X=1", "KEEPGPUX=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Env(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("Env(%q) = %q; want %q", tt.environ, got, tt.want)
			}
		})
	}
}
