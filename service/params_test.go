package service

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
)

// TestStartParams reads start_keep's parameters, as `keepgpu start` sends
// them, back into the same settings.
func TestStartParams(t *testing.T) {
	mustGPUs := func(s string) keeper.GPUs {
		g, err := keeper.ParseGPUs(s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	mustVRAM := func(s string) keeper.VRAM {
		v, err := keeper.ParseVRAM(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		p    Params
	}{
		{"defaults", Params{Spec: holder.Spec{GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(DefaultVRAM), Util: DefaultUtil,
			BusyThreshold: DefaultBusyThreshold, Interval: DefaultInterval}}},
		{"everything", Params{JobID: "prep-1", Spec: holder.Spec{GPUs: mustGPUs("1,GPU-abc"), VRAM: mustVRAM("40%"), Util: 0,
			BusyThreshold: -1, Interval: 1500 * time.Millisecond, AllowPartial: true}}},
		{"max", Params{Spec: holder.Spec{GPUs: mustGPUs("0"), VRAM: mustVRAM("max"), Util: 100, BusyThreshold: 100, Interval: 24 * time.Hour}}},
		{"bytes", Params{Spec: holder.Spec{GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM("123456789"), Util: 1, Interval: 10 * time.Millisecond}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := json.Marshal(tt.p.StartParams())
			if err != nil {
				t.Fatal(err)
			}
			got, aerr := parseStart(raw)
			if aerr != nil {
				t.Fatalf("parseStart(%s): %v", raw, aerr.Message)
			}
			if !reflect.DeepEqual(got, tt.p) {
				t.Errorf("parseStart(%s) = %+v\nwant %+v", raw, got, tt.p)
			}
		})
	}
}
