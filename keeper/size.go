package keeper

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/keepgpu/keepgpu/cuda"
)

// MaxBytes is the largest size keepgpu accepts (1 PiB).
const MaxBytes = 1 << 50

// maxMargin is what --vram max leaves free for the driver and for whoever
// takes the GPU next to create a context.
const maxMargin = 256 << 20

// VRAM is how much device memory to hold on each GPU: a number of bytes, a
// percentage of the card's total, or all free memory minus a margin.
type VRAM struct {
	Bytes   uint64
	Percent float64 // 0 < Percent <= 100 when set
	Max     bool
	text    string
}

var units = map[string]uint64{
	"":    1,
	"B":   1,
	"KB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
	"TB":  1e12,
	"PB":  1e15,
	"KIB": 1 << 10,
	"MIB": 1 << 20,
	"GIB": 1 << 30,
	"TIB": 1 << 40,
	"PIB": 1 << 50,
}

// MinBytes is the smallest size keepgpu holds (KeepGPU 1.0.0's limit).
const MinBytes = 4

// number is a size's number: digits, with an optional fraction.
var number = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)

// ParseVRAM reads a --vram value: "1GiB", "1.5 GB", "4096" (bytes), "50%",
// or "max". This one function reads sizes from flags, KEEPGPU_VRAM and the
// service's API alike.
//
// A unit in lower case only is bytes ("1gb" is 10^9 bytes, "512mib" is 512
// MiB), and so is one whose "B" is upper case ("1GB", "1gB"); KeepGPU reads
// the mixed-case forms with a lower-case "b" ("Gb", "Gib", "GIb") as bits,
// and keepgpu refuses those with a hint rather than silently hold an
// eighth of what was meant. A size is a whole number of bytes from 4 bytes
// to 1 PiB: "1.5" (one and a half bytes) and "0" are refused.
func ParseVRAM(s string) (VRAM, error) {
	in := strings.TrimSpace(s)
	v := VRAM{text: in}
	switch {
	case in == "":
		return v, errors.New("size: empty; want a size such as 1GiB, 512MiB, 2GB, 50% or max")
	case strings.EqualFold(in, "max"):
		v.Max = true
		return v, nil
	case strings.HasSuffix(in, "%"):
		p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(in, "%")), 64)
		if err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
			return v, fmt.Errorf("size %q: a percentage must be a number above 0 and at most 100", s)
		}
		v.Percent = p
		return v, nil
	}
	i := strings.IndexFunc(in, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i < 0 {
		i = len(in)
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	if !number.MatchString(num) {
		return v, fmt.Errorf("size %q: want a number and a unit, as 1GiB, 512MiB, 2GB, 50%% or max", s)
	}
	if strings.HasSuffix(unit, "b") && unit != strings.ToLower(unit) {
		return v, fmt.Errorf("size %q: %q is a unit of bits; keepgpu counts bytes: write %sB (decimal) or %siB (binary)",
			s, unit, bitPrefix(unit), bitPrefix(unit))
	}
	mult, ok := units[strings.ToUpper(unit)]
	if !ok {
		return v, fmt.Errorf("size %q: unknown unit %q (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)", s, unit)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return v, fmt.Errorf("size %q: want a number and a unit, as 1GiB, 512MiB, 2GB, 50%% or max", s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	switch {
	case r.Cmp(big.NewRat(MaxBytes, 1)) > 0:
		return v, fmt.Errorf("size %q: more than 1 PiB", s)
	case !r.IsInt():
		return v, fmt.Errorf("size %q: not a whole number of bytes (%s bytes); write a whole number or a larger unit", s, r.FloatString(3))
	case r.Cmp(big.NewRat(MinBytes, 1)) < 0:
		return v, fmt.Errorf("size %q: less than %d bytes", s, MinBytes)
	}
	v.Bytes = r.Num().Uint64()
	return v, nil
}

// bitPrefix returns the prefix letter of a bit unit such as "Gib", upper case.
func bitPrefix(unit string) string {
	p := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i"), "I")
	if p == "" {
		return ""
	}
	return strings.ToUpper(p)
}

// String returns the size as the user wrote it.
func (v VRAM) String() string {
	if v.text != "" {
		return v.text
	}
	switch {
	case v.Max:
		return "max"
	case v.Percent > 0:
		return strconv.FormatFloat(v.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatUint(v.Bytes, 10)
}

// Fixed reports whether the size is known without asking the driver for free
// memory, so it can be checked against the card before anything is held.
func (v VRAM) Fixed() bool { return !v.Max }

// Resolve returns the bytes to hold on a card with total bytes, free of them
// free now. A size above the card is refused; "max" takes free minus a margin.
func (v VRAM) Resolve(total, free uint64) (uint64, error) {
	switch {
	case v.Max:
		if free <= maxMargin {
			return 0, fmt.Errorf("--vram max: only %s free", cuda.FormatBytes(free))
		}
		return free - maxMargin, nil
	case v.Percent > 0:
		n := uint64(float64(total) * v.Percent / 100)
		if n < MinBytes {
			return 0, fmt.Errorf("--vram %s of the card's %s is less than %d bytes", v, cuda.FormatBytes(total), MinBytes)
		}
		return n, nil
	}
	if v.Bytes > total {
		return 0, fmt.Errorf("--vram %s is more than the card's %s", v, cuda.FormatBytes(total))
	}
	return v.Bytes, nil
}
