package keeper

import (
	"strings"
	"testing"
)

func TestParseVRAM(t *testing.T) {
	tests := []struct {
		in      string
		bytes   uint64
		percent float64
		max     bool
		err     string
	}{
		{in: "1GiB", bytes: 1 << 30},
		{in: "1GIB", bytes: 1 << 30},
		{in: "1gib", bytes: 1 << 30}, // all lower case: bytes, as KeepGPU 1.0.0 reads it
		{in: "1gb", bytes: 1e9},
		{in: "512mib", bytes: 512 << 20},
		{in: "1.5 GiB", bytes: 3 << 29},
		{in: "2GB", bytes: 2e9},
		{in: "2gB", bytes: 2e9},
		{in: "512MiB", bytes: 512 << 20},
		{in: "512 KB", bytes: 512e3},
		{in: "1TiB", bytes: 1 << 40},
		{in: "1PiB", bytes: 1 << 50},
		{in: "4096", bytes: 4096},
		{in: "4096B", bytes: 4096},
		{in: "0", err: "less than 4 bytes"},
		{in: "3", err: "less than 4 bytes"},
		{in: "4", bytes: 4},
		{in: "1.5", err: "not a whole number of bytes"},
		{in: "1.0001KB", err: "not a whole number of bytes"},
		{in: "1.5KB", bytes: 1500},
		{in: "1.1GB", bytes: 1.1e9},
		{in: ".5KiB", bytes: 512},
		{in: "1.KiB", bytes: 1024},
		{in: "0.0000001GiB", err: "not a whole number"},
		{in: "1e3", err: "unknown unit"},
		{in: "NaN", err: "want a number"},
		{in: "Inf%", err: "percentage"},
		{in: "١٢GiB", err: "want a number"},
		{in: "1 GiB GiB", err: "unknown unit"},
		{in: " 3 MB ", bytes: 3e6},
		{in: "50%", percent: 50},
		{in: "100%", percent: 100},
		{in: "12.5 %", percent: 12.5},
		{in: "max", max: true},
		{in: "MAX", max: true},
		{in: "", err: "empty"},
		{in: "0%", err: "percentage"},
		{in: "101%", err: "percentage"},
		{in: "x%", err: "percentage"},
		{in: "1Gb", err: "write GB (decimal) or GiB (binary)"},
		{in: "1Gib", err: "bits"},
		{in: "1Mb", err: "bits"},
		{in: "1KIb", err: "write KB"},
		{in: "8b", bytes: 8},
		{in: "8Kb", err: "bits"},
		{in: "1XB", err: "unknown unit"},
		{in: "GiB", err: "want a number"},
		{in: "-1GiB", err: "want a number"},
		{in: "1.2.3GB", err: "want a number"},
		{in: "1.1PiB", err: "more than 1 PiB"},
		{in: "2000TB", err: "more than 1 PiB"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := ParseVRAM(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseVRAM(%q) = %+v, %v; want error containing %q", tt.in, v, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVRAM(%q): %v", tt.in, err)
			}
			if v.Bytes != tt.bytes || v.Percent != tt.percent || v.Max != tt.max {
				t.Fatalf("ParseVRAM(%q) = %+v; want bytes %d percent %v max %v", tt.in, v, tt.bytes, tt.percent, tt.max)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	const total, free = 80 << 30, 60 << 30
	tests := []struct {
		in   string
		want uint64
		err  string
	}{
		{in: "1GiB", want: 1 << 30},
		{in: "80GiB", want: 80 << 30},
		{in: "81GiB", err: "more than the card's 80.0 GiB"},
		{in: "50%", want: 40 << 30},
		{in: "max", want: free - maxMargin},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := ParseVRAM(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Resolve(total, free)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Resolve = %d, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if _, err := (VRAM{Max: true}).Resolve(total, 100<<20); err == nil {
		t.Fatal("max with 100 MiB free: want error")
	}
}
