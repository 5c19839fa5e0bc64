package hip

import (
	"strconv"
	"strings"
)

// Visible returns the GPUs a HIP process started with the environment
// getenv reads would see, in HIP ordinal order, as indices into uuids: the
// node's GPUs in the order ROCr enumerates them, each named by its UUID
// ("" for a card without one).
//
// ROCR_VISIBLE_DEVICES is the base mask: indices into the node's GPUs or
// UUIDs (matched whole, without regard to case). HIP_VISIBLE_DEVICES, or
// CUDA_VISIBLE_DEVICES when it is unset, or GPU_DEVICE_ORDINAL when both
// are, then selects by index among the GPUs that mask leaves. Slurm's GRES
// sets ROCR_VISIBLE_DEVICES on AMD nodes. An unset variable selects every
// GPU; a set but empty one selects none. A list ends at its first entry
// that is malformed, out of range or a repeat, as CUDA_VISIBLE_DEVICES
// does.
func Visible(uuids []string, getenv func(string) (string, bool)) []int {
	base := make([]int, len(uuids))
	for i := range base {
		base[i] = i
	}
	if v, ok := getenv("ROCR_VISIBLE_DEVICES"); ok {
		base = filter(v, base, uuids)
	}
	for _, name := range []string{"HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"} {
		if v, ok := getenv(name); ok {
			return filter(v, base, nil)
		}
	}
	return base
}

// filter selects from list by the comma-separated entries of v: indices
// into list, or (where uuids is not nil) UUIDs of the node's GPUs in list.
func filter(v string, list []int, uuids []string) []int {
	out := []int{}
	if strings.TrimSpace(v) == "" {
		return out
	}
	seen := map[int]bool{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		pick := -1
		if n, err := strconv.Atoi(e); err == nil && e[0] != '+' && e[0] != '-' {
			if n < len(list) {
				pick = list[n]
			}
		} else if uuids != nil && len(e) > 4 && strings.EqualFold(e[:4], "GPU-") {
			for _, g := range list {
				if strings.EqualFold(uuids[g], e) {
					pick = g
				}
			}
		}
		if pick < 0 || seen[pick] {
			break
		}
		seen[pick] = true
		out = append(out, pick)
	}
	return out
}
