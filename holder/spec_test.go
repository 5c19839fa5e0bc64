package holder

import (
	"reflect"
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

// TestParseArgs decodes what Args writes into the same Spec, and leaves
// everything else (ok false) to the full command-line parser.
func TestParseArgs(t *testing.T) {
	gpus, err := keeper.ParseGPUs("1,GPU-abc")
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]Spec{
		"defaults":   {GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(t, "1GiB"), Util: 30, BusyThreshold: 25, Interval: 2 * time.Second},
		"everything": {GPUs: gpus, VRAM: mustVRAM(t, "50%"), Util: 0, BusyThreshold: -1, Interval: 500 * time.Millisecond, AllowPartial: true, TreeOf: 4242},
		"tree only":  {GPUs: gpus, VRAM: mustVRAM(t, "max"), Util: 100, BusyThreshold: 100, Interval: 24 * time.Hour, TreeOf: 1},
		"partial":    {GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(t, "123456789"), Util: 1, BusyThreshold: 0, Interval: 10 * time.Millisecond, AllowPartial: true},
		"platform":   {GPUs: gpus, VRAM: mustVRAM(t, "2GiB"), Util: 30, BusyThreshold: 25, Interval: time.Second, Platform: keeper.PlatformROCm, AllowPartial: true, TreeOf: 3},
		"auto":       {GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(t, "1GiB"), Util: 30, BusyThreshold: 25, Interval: time.Second, Platform: keeper.PlatformAuto},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			got, ok := ParseArgs(spec.Args())
			if !ok || !reflect.DeepEqual(got, spec) {
				t.Errorf("ParseArgs(%q) = %+v, %v\nwant %+v", spec.Args(), got, ok, spec)
			}
		})
	}
	base := specs["defaults"].Args()
	with := func(i int, v string) []string {
		a := slices.Clone(base)
		a[i] = v
		return a
	}
	refused := map[string][]string{
		"empty":              nil,
		"plain hold":         {"hold"},
		"not supervised":     append([]string{"hold"}, base[2:]...),
		"flags reordered":    append([]string{"hold", "--supervised", "--vram", "1GiB", "--gpus", "all"}, base[6:]...),
		"extra flag":         append(slices.Clone(base), "--quiet"),
		"tree-of before":     append(append([]string{}, base...), "--tree-of", "7", "--allow-partial"),
		"tree-of no value":   append(slices.Clone(base), "--tree-of"),
		"tree-of zero":       append(slices.Clone(base), "--tree-of", "0"),
		"tree-of octal":      append(slices.Clone(base), "--tree-of", "010"),
		"util plus":          with(7, "+30"),
		"util octal":         with(7, "030"),
		"util hex":           with(7, "0x1e"),
		"busy not a number":  with(9, "lots"),
		"bad gpus":           with(3, "0,,1"),
		"bad vram":           with(5, "1Gb"),
		"bad interval":       with(11, "soon"),
		"interval too short": with(11, "1ms"),
		"other command":      with(0, "wrap"),
		"platform upper":     append(slices.Clone(base), "--platform", "ROCM"),
		"platform unknown":   append(slices.Clone(base), "--platform", "cpu"),
		"platform no value":  append(slices.Clone(base), "--platform"),
		"platform after":     append(slices.Clone(base), "--allow-partial", "--platform", "cuda"),
	}
	for name, args := range refused {
		t.Run("refused/"+name, func(t *testing.T) {
			if got, ok := ParseArgs(args); ok {
				t.Errorf("ParseArgs(%q) = %+v, true; want false", args, got)
			}
		})
	}
}
