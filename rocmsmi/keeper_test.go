package rocmsmi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/keeper"
)

// keep is the child process of TestKeeperOnAMD: keeper holding every GPU
// HIP shows, 1 GiB each at 30%, with ROCm SMI's telemetry, both loaded by
// soname; it prints keeper's events as JSON lines and releases when its
// standard input closes.
func keep() int {
	r, err := hip.Load()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	devs, err := r.Devices()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	s, err := Open()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer s.Close()
	var gpus []cuda.DeviceInfo
	for _, d := range devs {
		gpus = append(gpus, cuda.DeviceInfo{Ordinal: d.Ordinal, UUID: d.ID(), Name: d.Name, TotalBytes: d.TotalBytes})
	}
	vram, _ := keeper.ParseVRAM("1GiB")
	out := json.NewEncoder(os.Stdout)
	g, err := keeper.Start(context.Background(), gpus, func(info cuda.DeviceInfo) (keeper.Device, error) {
		return r.NewContext(info.Ordinal)
	}, keeper.Options{VRAM: vram, Util: 30, BusyThreshold: 25, Interval: 100 * time.Millisecond,
		Telemetry: s.Telemetry(devs), Events: func(e keeper.Event) { out.Encode(e) }})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	if err := g.Release(); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

// TestKeeperOnAMD holds a GPU of a fake AMD node with keeper, hip and
// rocmsmi together in another process, as a holder would: the VRAM and
// the load show in ROCm SMI, a foreign process pauses the load and its end
// resumes it, and release hands everything back.
func TestKeeperOnAMD(t *testing.T) {
	node := newNode(t, 2)
	s := openFake(t, node)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEEPGPU_ROCMSMI_CHILD=keep", "LD_LIBRARY_PATH="+filepath.Dir(s.Library),
		"FAKEGPU_DIR="+node.Dir, "ROCR_VISIBLE_DEVICES=1")
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	events := make(chan keeper.Event, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e keeper.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("child: %s", sc.Text())
				continue
			}
			events <- e
		}
		close(events)
	}()
	wait := func(kind string) keeper.Event {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("child ended before %q", kind)
				}
				if e.Kind == kind {
					return e
				}
			case <-timeout:
				t.Fatalf("no %q event", kind)
			}
		}
	}
	if e := wait("held"); e.UUID != node.AMDUUID(1) || e.Bytes != 1<<30 {
		t.Errorf("held %+v; want GPU 1 of the node, 1 GiB", e)
	}
	time.Sleep(1200 * time.Millisecond)
	smp, err := s.Sample(1)
	if err != nil {
		t.Fatal(err)
	}
	if smp.MemUsed != 1<<30+hip.WorkBytes || smp.Util < 10 || smp.Util > 50 || len(smp.Procs) != 1 || smp.Procs[0].PID != cmd.Process.Pid {
		t.Errorf("ROCm SMI reads %d bytes used, %d%% busy, processes %v; want 1 GiB + the work buffer, about 30%%, the holder", smp.MemUsed, smp.Util, smp.Procs)
	}
	if p0, _ := node.Procs(0); len(p0) != 0 {
		t.Errorf("GPU 0, hidden by ROCR_VISIBLE_DEVICES, has records %+v", p0)
	}

	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	node.AddProcess(1, sleep.Process.Pid, 2<<30)
	if e := wait("paused"); !strings.Contains(e.Reason, fmt.Sprintf("foreign compute process %d", sleep.Process.Pid)) {
		t.Errorf("paused: %q", e.Reason)
	}
	node.RemoveProcess(1, sleep.Process.Pid)
	wait("resumed")

	in.Close()
	wait("released")
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
	if procs, _ := node.Procs(1); len(procs) != 1 || procs[0].Bytes != 0 {
		t.Errorf("after release the node sees %+v, want no bytes held", procs)
	}
}
