package rocmsmi

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"

	"github.com/keepgpu/keepgpu/hip"
)

// TestTelemetry reads, in keeper's shape, the GPUs a process that sees
// only some of the node's (ROCR_VISIBLE_DEVICES=2,1) would have from HIP.
func TestTelemetry(t *testing.T) {
	node := newNode(t, 3)
	node.SetAMD(1, "uuid", "none")
	node.Set(2, "util", "20")
	s := openFake(t, node)
	devs := []hip.DeviceInfo{
		{Ordinal: 0, UUID: node.AMDUUID(2), PCIBusID: node.PCIBusID(2)},
		{Ordinal: 1, PCIBusID: node.PCIBusID(1)}, // a card without a unique id
	}
	tel := s.Telemetry(devs)

	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	node.AddProcess(2, sleep.Process.Pid, 2<<30)

	tests := []struct {
		id    string
		index int
		util  int
		procs string
	}{
		{devs[0].ID(), 2, 20, fmt.Sprint([]Process{{sleep.Process.Pid, 2 << 30}})},
		{devs[1].ID(), 1, 0, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			smp, err := tel.Sample(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if smp.Index != tt.index || smp.UUID != tt.id || smp.Util != tt.util || smp.UtilErr != nil || fmt.Sprint(smp.Procs) != tt.procs {
				t.Errorf("Sample = %+v", smp)
			}
			if !errors.Is(smp.ModeErr, StatusNotSupported) || !errors.Is(smp.ProcUtilErr, StatusNotSupported) {
				t.Errorf("compute mode %v, process utilization %v; want not supported", smp.ModeErr, smp.ProcUtilErr)
			}
			procs, err := tel.Processes(tt.id)
			if err != nil || fmt.Sprint(procs) != tt.procs {
				t.Errorf("Processes = %v, %v; want %s", procs, err, tt.procs)
			}
		})
	}
	if _, err := tel.Sample(node.AMDUUID(0)); err == nil {
		t.Error("read a GPU HIP did not show")
	}
}
