package fakegpu

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Built once by TestMain when gcc is available: the libraries and the
// driver program (see driverSource at the end of this file).
var (
	libDir     string
	driverPath string
	setupErr   error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if _, err := exec.LookPath("gcc"); err != nil {
		return m.Run() // the tests that need gcc skip
	}
	tmp, err := os.MkdirTemp("", "fakegpu-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	libDir = filepath.Join(tmp, "lib")
	if setupErr = Build(libDir); setupErr == nil {
		src := filepath.Join(tmp, "driver.c")
		driverPath = filepath.Join(tmp, "driver")
		setupErr = os.WriteFile(src, []byte(driverSource), 0o644)
		if setupErr == nil {
			out, err := exec.Command("gcc", "-O1", "-Wall", "-Werror", "-o", driverPath, src,
				"-ldl", "-lpthread").CombinedOutput()
			if err != nil {
				setupErr = fmt.Errorf("building the driver: %v\n%s", err, out)
			}
		}
	}
	return m.Run()
}

// needGCC skips the test without gcc and fails it if the setup failed.
func needGCC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not available")
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// newNode makes a node with gpus GPUs in a fresh directory, using the
// libraries TestMain built.
func newNode(t *testing.T, gpus int) *Node {
	t.Helper()
	needGCC(t)
	n, err := NewNode(t.TempDir(), libDir, gpus)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// env is the environment of a driver process: this process's, without any
// GPU settings, plus extra ("KEY=value"; "KEY" alone removes KEY).
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUDA_VISIBLE_DEVICES=") && !strings.HasPrefix(kv, "FAKEGPU_DIR=") {
			out = append(out, kv)
		}
	}
	for _, kv := range extra {
		if !strings.Contains(kv, "=") {
			var kept []string
			for _, o := range out {
				if !strings.HasPrefix(o, kv+"=") {
					kept = append(kept, o)
				}
			}
			out = kept
			continue
		}
		out = append(out, kv)
	}
	return out
}

// drive runs the driver with the given environment and commands and
// returns its output lines.
func drive(t *testing.T, environ []string, cmds ...string) []string {
	t.Helper()
	cmd := exec.Command(driverPath, cmds...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("driver %v: %v\n%s", cmds, err, out)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// expect checks that the driver printed exactly want.
func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("driver printed:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// holder is a driver process that pauses at its "wait" commands.
type holder struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	pid   int
}

// hold starts the driver with "pid" prepended to cmds and runs it up to
// its first "wait", returning the lines printed before it.
func hold(t *testing.T, environ []string, cmds ...string) (*holder, []string) {
	t.Helper()
	cmd := exec.Command(driverPath, append([]string{"pid"}, cmds...)...)
	cmd.Env = environ
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() { h.finish() })
	lines := h.untilWait()
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "pid ") {
		t.Fatalf("holder printed %q", lines)
	}
	h.pid, _ = strconv.Atoi(strings.TrimPrefix(lines[0], "pid "))
	return h, lines[1:]
}

// untilWait reads lines up to the next "waiting" (or the end).
func (h *holder) untilWait() []string {
	var lines []string
	for h.out.Scan() {
		if h.out.Text() == "waiting" {
			return lines
		}
		lines = append(lines, h.out.Text())
	}
	return lines
}

// next lets the holder go on to its next "wait", returning what it printed.
func (h *holder) next() []string {
	if _, err := io.WriteString(h.stdin, "\n"); err != nil {
		h.t.Fatal(err)
	}
	return h.untilWait()
}

// finish lets the holder run to its end and reaps it, so that its pid is
// dead (not a zombie) afterwards. It returns the remaining output.
func (h *holder) finish() []string {
	if h.cmd.ProcessState != nil {
		return nil
	}
	h.stdin.Close()
	var lines []string
	for h.out.Scan() {
		if h.out.Text() != "waiting" {
			lines = append(lines, h.out.Text())
		}
	}
	if err := h.cmd.Wait(); err != nil {
		h.t.Errorf("holder: %v", err)
	}
	return lines
}

// field returns the i-th space-separated field of line (0 is the name).
func field(t *testing.T, line string, i int) int64 {
	t.Helper()
	f := strings.Fields(line)
	if i >= len(f) {
		t.Fatalf("line %q has no field %d", line, i)
	}
	v, err := strconv.ParseInt(f[i], 10, 64)
	if err != nil {
		t.Fatalf("line %q: field %d: %v", line, i, err)
	}
	return v
}

// uuidHex is a "GPU-..." UUID as the 32 hex digits of its bytes.
func uuidHex(uuid string) string {
	return strings.ReplaceAll(strings.TrimPrefix(uuid, "GPU-"), "-", "")
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(driverPath)
	cmd.Env = env("LD_LIBRARY_PATH=" + libDir)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Alive(pid) {
		t.Fatalf("pid %d is still alive", pid)
	}
	return pid
}

const (
	miB = 1 << 20
	giB = 1 << 30
)

func TestLibrariesExportTheContract(t *testing.T) {
	n := newNode(t, 1)
	// The driver dlopens both libraries by soname through LD_LIBRARY_PATH.
	expect(t, drive(t, env(n.Env()...), "syms"), "syms done")
}

func TestNoStateDirectoryMeansNoGPUs(t *testing.T) {
	n := newNode(t, 2)
	environ := env(append(n.Env(), "FAKEGPU_DIR")...)
	expect(t, drive(t, environ, "init", "count", "ninit", "ncount", "nsys"),
		"init 100", "count 3 -1", "ninit 0", "ncount 0 0", "nsys 0 0 550.54.15 12040")
}

func TestCallsBeforeInitFail(t *testing.T) {
	n := newNode(t, 1)
	expect(t, drive(t, env(n.Env()...), "count", "ctx:0", "alloc:1", "ncount", "nerr:1", "errname:3"),
		"count 3 -1", "ctx 3", "alloc 3", "ncount 1 12345", "nerr Uninitialized",
		"errname 0 CUDA_ERROR_NOT_INITIALIZED")
}

func TestCUDAVisibleDevices(t *testing.T) {
	n := newNode(t, 4)
	if err := n.Set(1, "uuid", "GPU-abcdef01-2345-4678-9abc-def012345678"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, value string // value "unset" means unset
		want        []int  // physical GPUs, in CUDA order
	}{
		{"unset", "unset", []int{0, 1, 2, 3}},
		{"ordinals", "2,0", []int{2, 0}},
		{"spaces", " 3 , 1", []int{3, 1}},
		{"uuid", n.UUID(3), []int{3}},
		{"uuid and ordinal", n.UUID(1) + ",0", []int{1, 0}},
		{"unique prefix", "GPU-abc", []int{1}},
		{"ambiguous prefix", "GPU-0000", nil},
		{"out of range cuts", "1,7,2", []int{1}},
		{"repeat cuts", "1,1,2", []int{1}},
		{"invalid cuts", "0,foo,1", []int{0}},
		{"empty entry cuts", "2,,1", []int{2}},
		{"empty", "", nil},
		{"minus one", "-1", nil},
		{"garbage", "foo", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := append(n.Env(), "CUDA_VISIBLE_DEVICES="+tc.value)
			if tc.value == "unset" {
				extra = n.Env()
			}
			got := drive(t, env(extra...), "init", "count", "uuids", "ninit", "ncount")
			if len(tc.want) == 0 {
				expect(t, got, "init 100", "count 3 -1", "uuids", "ninit 0", "ncount 0 4")
				return
			}
			uuids := "uuids"
			for _, g := range tc.want {
				uuids += " " + uuidHex(n.UUID(g))
			}
			// NVML ignores CUDA_VISIBLE_DEVICES.
			expect(t, got, "init 0", fmt.Sprintf("count 0 %d", len(tc.want)), uuids, "ninit 0", "ncount 0 4")
		})
	}
	got := drive(t, env(append(n.Env(), "CUDA_VISIBLE_DEVICES=3,1")...), "init", "get:1", "get:2", "name:0", "name:2")
	expect(t, got, "init 0", "get 0 1", "get 101 -1", "name 0 Fake GPU 3", "name 101 ")
}

func TestDeviceProperties(t *testing.T) {
	n := newNode(t, 2)
	for _, kv := range [][2]string{
		{"name", "NVIDIA H100 80GB HBM3"}, {"total", "1073741824"}, {"cc", "8.6"},
		{"compute_mode", "3"}, {"mig", "1"}, {"power", "81000"}, {"util", "na"},
	} {
		if err := n.Set(1, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	u0, u1 := n.UUID(0), n.UUID(1)
	if u0 != "GPU-00000000-0000-4000-8000-000000000000" || len(u1) != 40 {
		t.Errorf("default UUIDs %q, %q", u0, u1)
	}
	got := drive(t, env(n.Env()...),
		"init", "name:0", "name:1", "total:0", "total:1",
		"attr:75:0", "attr:76:0", "attr:75:1", "attr:76:1", "attr:16:1", "attr:20:0", "attr:20:1", "attr:1:0",
		"ninit", "ndev:0", "ndev:1", "nbyuuid:"+u1, "nbyuuid:GPU-nope", "nsys")
	expect(t, got,
		"init 0", "name 0 Fake GPU 0", "name 0 NVIDIA H100 80GB HBM3", "total 0 85899345920", "total 0 1073741824",
		"attr 0 9", "attr 0 0", "attr 0 8", "attr 0 6", "attr 0 132", "attr 0 0", "attr 0 3", "attr 1 -1",
		"ninit 0",
		"ndev 0 0 0 0 0 0 0 0 0 name=Fake GPU 0 uuid="+u0+" index=0 mode=0 mig=0/0 cc=9.0 temp=35 power=70000",
		"ndev 0 0 0 0 0 0 0 0 0 name=NVIDIA H100 80GB HBM3 uuid="+u1+" index=1 mode=3 mig=1/1 cc=8.6 temp=35 power=81000",
		"nbyuuid 0 1", "nbyuuid 6 999", "nsys 0 0 550.54.15 12040")
}

func TestErrorStrings(t *testing.T) {
	n := newNode(t, 1)
	expect(t, drive(t, env(n.Env()...),
		"errname:0", "errname:2", "errstr:100", "errstr:46", "errname:218", "errname:12345",
		"nerr:0", "nerr:3", "nerr:7", "nerr:9", "nerr:999"),
		"errname 0 CUDA_SUCCESS", "errname 0 CUDA_ERROR_OUT_OF_MEMORY",
		"errstr 0 no CUDA-capable device is detected",
		"errstr 0 CUDA-capable device(s) is/are busy or unavailable",
		"errname 0 CUDA_ERROR_INVALID_PTX", "errname 1 (null)",
		"nerr Success", "nerr Not Supported", "nerr Insufficient Size", "nerr Driver Not Loaded", "nerr Unknown Error")
}

func TestInitErrors(t *testing.T) {
	n := newNode(t, 1)
	if err := n.SetInitError("cuda", 999); err != nil {
		t.Fatal(err)
	}
	if err := n.SetInitError("nvml", 9); err != nil {
		t.Fatal(err)
	}
	expect(t, drive(t, env(n.Env()...), "init", "count", "ninit", "ncount"),
		"init 999", "count 3 -1", "ninit 9", "ncount 1 12345")
	if err := n.ClearInitError("cuda"); err != nil {
		t.Fatal(err)
	}
	if err := n.ClearInitError("nvml"); err != nil {
		t.Fatal(err)
	}
	expect(t, drive(t, env(n.Env()...), "init", "count", "ninit", "ncount", "nshutdown", "ncount", "nshutdown"),
		"init 0", "count 0 1", "ninit 0", "ncount 0 1", "nshutdown 0", "ncount 1 12345", "nshutdown 1")
}

func TestMemoryIsVisibleToNVMLAndOtherProcesses(t *testing.T) {
	n := newNode(t, 2)
	h, lines := hold(t, env(n.Env()...), "init", "ctx:0", "alloc:2147483648", "alloc:1048576", "thread", "wait",
		"free", "wait", "destroy", "wait")
	expect(t, lines, "init 0", "ctx 0", "alloc 0", "alloc 0", "thread 0 1 201")

	procs, err := n.Procs(0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Proc{{PID: h.pid, Contexts: 1, Bytes: 2*giB + miB, Alive: true}}
	if fmt.Sprint(procs) != fmt.Sprint(want) {
		t.Errorf("Procs(0) = %+v, want %+v", procs, want)
	}

	total := uint64(85899345920)
	used := uint64(2*giB + miB)
	expect(t, drive(t, env(n.Env()...), "ninit", "nmem:0", "nmem:1", "nprocs:0", "nprocs:1",
		"init", "ctx:0", "meminfo", "alloc:1024", "meminfo", "destroy"),
		"ninit 0",
		fmt.Sprintf("nmem 0 %d %d %d", total, total-used, used),
		fmt.Sprintf("nmem 0 %d %d 0", total, total),
		fmt.Sprintf("nprocs 0 %d:%d:ffffffff:ffffffff", h.pid, used),
		"nprocs 0",
		"init 0", "ctx 0",
		fmt.Sprintf("meminfo 0 %d %d", total-used, total),
		"alloc 0",
		fmt.Sprintf("meminfo 0 %d %d", total-used-1024, total),
		"destroy 0")

	// Freeing the second allocation updates the record.
	expect(t, h.next(), "free 0")
	if procs, _ = n.Procs(0); len(procs) != 1 || procs[0].Bytes != 2*giB {
		t.Errorf("after free, Procs(0) = %+v", procs)
	}

	// Destroying the context frees everything and deletes the record.
	expect(t, h.next(), "destroy 0")
	if procs, _ = n.Procs(0); len(procs) != 0 {
		t.Errorf("after cuCtxDestroy_v2, Procs(0) = %+v, want none", procs)
	}
	expect(t, drive(t, env(n.Env()...), "ninit", "nmem:0", "nprocs:0"),
		"ninit 0", fmt.Sprintf("nmem 0 %d %d 0", total, total), "nprocs 0")
	h.finish()
}

func TestOutOfMemory(t *testing.T) {
	n := newNode(t, 1)
	if err := n.Set(0, "total", strconv.Itoa(giB)); err != nil {
		t.Fatal(err)
	}
	// A live foreign process (this test) holds 400 MiB.
	if err := n.AddProcess(0, os.Getpid(), 400*miB); err != nil {
		t.Fatal(err)
	}
	expect(t, drive(t, env(n.Env()...), "init", "ctx:0",
		"alloc:536870912", "alloc:209715200", "alloc:104857600", "meminfo", "alloc:0",
		"memset:0:104857600", "memset:1:104857600", "memset:104857599:1", "memset:104857600:1",
		"free", "free", "meminfo"),
		"init 0", "ctx 0",
		"alloc 0", "alloc 2", "alloc 0",
		fmt.Sprintf("meminfo 0 %d %d", 12*miB, giB),
		"alloc 1",
		"memset 0", "memset 1", "memset 0", "memset 1",
		"free 0", "free 1",
		fmt.Sprintf("meminfo 0 %d %d", 112*miB, giB))
}

func TestNoCurrentContext(t *testing.T) {
	n := newNode(t, 1)
	expect(t, drive(t, env(n.Env()...), "init", "alloc:1", "meminfo", "sync", "load:good",
		"ctx:0", "alloc:1", "setcur:0", "alloc:1", "free", "sync", "setcur:1", "free", "destroy", "alloc:1", "destroy"),
		"init 0", "alloc 201", "meminfo 201 0 0", "sync 201 0", "load 201 256 "+strings.Repeat("x", 255),
		"ctx 0", "alloc 0", "setcur 0", "alloc 201", "free 201", "sync 201 0", "setcur 0", "free 0", "destroy 0",
		"alloc 201", "destroy 201")
}

func TestModules(t *testing.T) {
	n := newNode(t, 1)
	got := drive(t, env(n.Env()...), "init", "ctx:0",
		"load:noentry", "load:nover", "load:good",
		"func:nope", "func:spi", "func:spin", "launch:1000:1:0:1", "launch:1000:1:1:2048", "launch:1000:3",
		"unload", "launch:1000:1", "func:spin")
	expect(t, got, "init 0", "ctx 0",
		"load 218 45 ptxas fatal   : fake driver: no .entry in PTX",
		"load 218 57 ptxas fatal   : fake driver: no .version directive in PTX",
		"load 0 0 ",
		"func 500", "func 500", "func 0", "launch 1", "launch 1", "launch 0",
		"unload 0", "launch 400", "func 400")
}

func TestExclusiveProcessMode(t *testing.T) {
	n := newNode(t, 2)
	if err := n.Set(0, "compute_mode", "3"); err != nil {
		t.Fatal(err)
	}
	h, lines := hold(t, env(n.Env()...), "init", "ctx:0", "ctx:0", "wait")
	// One process may hold several contexts on an exclusive-process GPU.
	expect(t, lines, "init 0", "ctx 0", "ctx 0")
	// Another may not, but can use a GPU in default mode.
	expect(t, drive(t, env(n.Env()...), "init", "ctx:0", "ctx:1"), "init 0", "ctx 46", "ctx 0")

	// The holder exits without destroying its contexts: its record stays
	// but its pid is dead, so the GPU is free again.
	h.finish()
	procs, err := n.Procs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].PID != h.pid || procs[0].Alive || procs[0].Contexts != 2 {
		t.Errorf("Procs(0) = %+v, want a dead record of %d with 2 contexts", procs, h.pid)
	}
	expect(t, drive(t, env(n.Env()...), "ninit", "nprocs:0", "init", "ctx:0"), "ninit 0", "nprocs 0", "init 0", "ctx 0")

	// Prohibited refuses everyone.
	if err := n.Set(1, "compute_mode", "2"); err != nil {
		t.Fatal(err)
	}
	expect(t, drive(t, env(n.Env()...), "init", "ctx:1", "attr:20:1"), "init 0", "ctx 46", "attr 0 2")
}

func TestDeadProcessesAreIgnored(t *testing.T) {
	n := newNode(t, 1)
	dead := deadPID(t)
	if err := n.AddProcess(0, dead, 85899345920); err != nil {
		t.Fatal(err)
	}
	total := uint64(85899345920)
	expect(t, drive(t, env(n.Env()...), "ninit", "nmem:0", "nprocs:0", "nprocs0:0", "init", "ctx:0", "alloc:1073741824"),
		"ninit 0", fmt.Sprintf("nmem 0 %d %d 0", total, total), "nprocs 0", "nprocs0 0 0", "init 0", "ctx 0", "alloc 0")

	// A live foreign process counts, and the client's growing loop grows.
	if err := n.AddProcess(0, os.Getpid(), giB); err != nil {
		t.Fatal(err)
	}
	if err := n.AddProcess(0, os.Getppid(), 2*giB); err != nil {
		t.Fatal(err)
	}
	a, b := os.Getpid(), os.Getppid()
	ab, bb := giB, 2*giB
	if b < a {
		a, b, ab, bb = b, a, bb, ab
	}
	expect(t, drive(t, env(n.Env()...), "ninit", "nmem:0", "nprocs:0", "nprocs0:0"),
		"ninit 0", fmt.Sprintf("nmem 0 %d %d %d", total, total-3*giB, 3*giB),
		fmt.Sprintf("nprocs 0 %d:%d:ffffffff:ffffffff %d:%d:ffffffff:ffffffff", a, ab, b, bb),
		"nprocs0 7 2")

	procs, err := n.Procs(0)
	if err != nil {
		t.Fatal(err)
	}
	// Four records: the dead pid, the exited driver and the two live ones.
	alive := map[int]bool{}
	for _, p := range procs {
		alive[p.PID] = p.Alive
	}
	if len(procs) != 4 || alive[dead] || !alive[os.Getpid()] || !alive[os.Getppid()] {
		t.Errorf("Procs(0) = %+v", procs)
	}
	if err := n.RemoveProcess(0, os.Getppid()); err != nil {
		t.Fatal(err)
	}
	if procs, _ := n.Procs(0); len(procs) != 3 {
		t.Errorf("after RemoveProcess, Procs(0) = %+v", procs)
	}
}

func TestUtilizationFollowsKernels(t *testing.T) {
	n := newNode(t, 2)
	if err := n.Set(0, "util", "30"); err != nil {
		t.Fatal(err)
	}
	expect(t, drive(t, env(n.Env()...), "ninit", "nutil:0", "nputil:0", "npower:0"),
		"ninit 0", "nutil 0 30 0", "nputil 7", "npower 0 70000")

	// Ten 50 ms kernels back to back: about 500 ms of the last second.
	h, lines := hold(t, env(n.Env()...), "init", "ctx:0", "load:good", "func:spin",
		"launch:50000000:10", "sync", "wait", "launch:0:1", "sync", "wait")
	if len(lines) != 6 || lines[4] != "launch 0" || !strings.HasPrefix(lines[5], "sync 0 ") {
		t.Fatalf("holder printed %q", lines)
	}
	if ms := field(t, lines[5], 2); ms < 450 || ms > 2000 {
		t.Errorf("cuCtxSynchronize waited %d ms for 500 ms of kernels", ms)
	}
	got := drive(t, env(n.Env()...), "ninit", "nutil:0", "nputil:0", "npower:0", "nutil:1")
	if len(got) != 5 {
		t.Fatalf("driver printed %q", got)
	}
	if u := field(t, got[1], 2); u < 70 || u > 100 {
		t.Errorf("utilization %d, want 30 + about 50", u)
	}
	f := strings.Fields(got[2])
	if len(f) != 4 || f[1] != "7" || f[2] != "0" {
		t.Fatalf("nputil printed %q", got[2])
	}
	var pid, sm, stamped int
	if _, err := fmt.Sscanf(f[3], "%d:%d:%d", &pid, &sm, &stamped); err != nil {
		t.Fatal(err)
	}
	if pid != h.pid || sm < 40 || sm > 100 || stamped != 1 {
		t.Errorf("process sample %q: want pid %d with about 50%% SM", f[3], h.pid)
	}
	if mw := field(t, got[3], 2); mw < 70000+1200 || mw > 73000 {
		t.Errorf("power %d mW, want about 71500", mw)
	}
	if got[4] != "nutil 0 0 0" {
		t.Errorf("the other GPU: %q", got[4])
	}

	procs, err := n.Procs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].Launches != 10 || procs[0].LastKernelEnd == 0 {
		t.Errorf("Procs(0) = %+v, want 10 launches", procs)
	}
	end := procs[0].LastKernelEnd
	expect(t, h.next(), "launch 0", "sync 0 0")
	if procs, _ = n.Procs(0); len(procs) != 1 || procs[0].Launches != 11 || procs[0].LastKernelEnd <= end {
		t.Errorf("Procs(0) = %+v, want 11 launches ending after %d", procs, end)
	}
	h.finish()
}

func TestUtilizationNotSupported(t *testing.T) {
	n := newNode(t, 3)
	for _, s := range [][3]string{{"0", "util", "na"}, {"1", "mig", "1"}, {"2", "util", "20"}} {
		gpu, _ := strconv.Atoi(s[0])
		if err := n.Set(gpu, s[1], s[2]); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, drive(t, env(n.Env()...), "ninit", "nutil:0", "nputil:0", "nutil:1", "nputil:1", "nutil:2"),
		"ninit 0", "nutil 3 777 777", "nputil 3", "nutil 3 777 777", "nputil 3", "nutil 0 20 0")
}

func TestNodeAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	n, err := NewNode(dir, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "gpu1", "procs")); err != nil || !fi.IsDir() {
		t.Errorf("gpu1/procs: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "devices")); string(data) != "2\n" {
		t.Errorf("devices = %q", data)
	}
	if g, err := n.GPUs(); g != 2 || err != nil {
		t.Errorf("GPUs() = %d, %v", g, err)
	}

	t.Setenv("LD_LIBRARY_PATH", "/old")
	if got := strings.Join(n.Env(), " "); got != "FAKEGPU_DIR="+dir {
		t.Errorf("Env() without libraries = %q", got)
	}
	n.LibDir = "/lib/fake"
	if got := strings.Join(n.Env(), " "); got != "FAKEGPU_DIR="+dir+" LD_LIBRARY_PATH=/lib/fake:/old" {
		t.Errorf("Env() = %q", got)
	}

	for _, bad := range [][3]string{
		{"0", "colour", "red"}, {"0", "util", "lots"}, {"0", "compute_mode", "7"}, {"0", "cc", "9"},
		{"0", "total", "-1"}, {"2", "util", "5"}, {"-1", "util", "5"},
	} {
		gpu, _ := strconv.Atoi(bad[0])
		if err := n.Set(gpu, bad[1], bad[2]); err == nil {
			t.Errorf("Set(%s, %s, %s) succeeded", bad[0], bad[1], bad[2])
		}
	}
	if err := n.Set(1, "uuid", "GPU-12345678-1234-1234-1234-123456789abc"); err != nil {
		t.Fatal(err)
	}
	if u := n.UUID(1); u != "GPU-12345678-1234-1234-1234-123456789abc" {
		t.Errorf("UUID(1) = %q", u)
	}
	if u := n.UUID(0); u != "GPU-00000000-0000-4000-8000-000000000000" {
		t.Errorf("UUID(0) = %q", u)
	}
	if err := n.Configure(0, GPU{Name: "A100", Total: 42}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"name": "A100\n", "total": "42\n"} {
		if data, _ := os.ReadFile(filepath.Join(dir, "gpu0", key)); string(data) != want {
			t.Errorf("gpu0/%s = %q, want %q", key, data, want)
		}
	}

	if err := n.SetInitError("cuda", 3); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "cuda_init_error")); string(data) != "3\n" {
		t.Errorf("cuda_init_error = %q", data)
	}
	if err := n.ClearInitError("cuda"); err != nil {
		t.Fatal(err)
	}
	if err := n.ClearInitError("cuda"); err != nil {
		t.Errorf("second ClearInitError: %v", err)
	}
	if err := n.SetInitError("opencl", 1); err == nil {
		t.Error("SetInitError(opencl) succeeded")
	}

	// Records written by hand (as libcuda does) parse, temporary files don't.
	rec := "contexts 2\nbytes 4096\nlaunches 3\nkernel 100 200\nkernel 300 450\nkernel 250 260\n"
	if err := os.WriteFile(filepath.Join(dir, "gpu1", "procs", strconv.Itoa(os.Getpid())), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gpu1", "procs", ".123.1.tmp"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.AddProcess(1, 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := n.AddProcess(5, 1, 10); err == nil {
		t.Error("AddProcess on GPU 5 succeeded")
	}
	procs, err := n.Procs(1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Proc{
		{PID: 1, Contexts: 1, Bytes: 10, Alive: true},
		{PID: os.Getpid(), Contexts: 2, Bytes: 4096, Launches: 3, Alive: true, LastKernelEnd: 450},
	}
	if fmt.Sprint(procs) != fmt.Sprint(want) {
		t.Errorf("Procs(1) = %+v, want %+v", procs, want)
	}
	if err := n.RemoveProcess(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := n.RemoveProcess(1, 1); err != nil {
		t.Errorf("second RemoveProcess: %v", err)
	}
	if procs, _ := n.Procs(1); len(procs) != 1 {
		t.Errorf("after RemoveProcess, Procs(1) = %+v", procs)
	}
	if procs, err := n.Procs(7); procs != nil || err != nil {
		t.Errorf("Procs(7) = %v, %v", procs, err)
	}
}

func TestNewNodeBuildsLibrariesOnce(t *testing.T) {
	needGCC(t)
	lib := t.TempDir()
	if _, err := NewNode(t.TempDir(), lib, 1); err != nil {
		t.Fatal(err)
	}
	var mtimes []time.Time
	for _, name := range []string{CUDALib, NVMLLib} {
		fi, err := os.Stat(filepath.Join(lib, name))
		if err != nil {
			t.Fatal(err)
		}
		mtimes = append(mtimes, fi.ModTime())
	}
	time.Sleep(20 * time.Millisecond)
	n, err := NewNode(t.TempDir(), lib, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{CUDALib, NVMLLib} {
		if fi, _ := os.Stat(filepath.Join(lib, name)); !fi.ModTime().Equal(mtimes[i]) {
			t.Errorf("%s was rebuilt", name)
		}
	}
	if n.LibDir != lib {
		t.Errorf("LibDir = %q, want %q", n.LibDir, lib)
	}
	expect(t, drive(t, env(n.Env()...), "init", "count"), "init 0", "count 0 1")
}

func TestMainCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	pid := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"init", dir, "2"}, 0, ""},
		{[]string{"set", dir, "1", "util", "na"}, 0, ""},
		{[]string{"set", dir, "1", "util", "many"}, 1, ""},
		{[]string{"set", dir, "9", "util", "1"}, 1, ""},
		{[]string{"init-error", dir, "nvml", "9"}, 0, ""},
		{[]string{"init-error", dir, "cuda", "clear"}, 0, ""},
		{[]string{"init-error", dir, "gl", "1"}, 1, ""},
		{[]string{"add-proc", dir, "1", pid, "1024"}, 0, ""},
		{[]string{"add-proc", dir, "1", "1", "2048"}, 0, ""},
		{[]string{"procs", dir, "1"}, 0, fmt.Sprintf("1 1 2048 0 true\n%s 1 1024 0 true\n", pid)},
		{[]string{"rm-proc", dir, "1", "1"}, 0, ""},
		{[]string{"procs", dir, "1"}, 0, pid + " 1 1024 0 true\n"},
		{[]string{"procs", dir, "0"}, 0, ""},
		{[]string{"uuid", dir, "1"}, 0, "GPU-00000000-0000-4000-8000-000000000001\n"},
		{[]string{}, 2, ""},
		{[]string{"frob", dir}, 2, ""},
		{[]string{"set", dir, "1"}, 2, ""},
		{[]string{"add-proc", dir, "x", "1", "1"}, 2, ""},
	} {
		code, stdout, stderr := run(c.args...)
		if code != c.code || stdout != c.stdout {
			t.Errorf("fakegpu %q = %d, %q (stderr %q); want %d, %q", c.args, code, stdout, stderr, c.code, c.stdout)
		}
		if (code != 0) != (stderr != "") {
			t.Errorf("fakegpu %q: exit %d with stderr %q", c.args, code, stderr)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "nvml_init_error")); string(data) != "9\n" {
		t.Errorf("nvml_init_error = %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "gpu1", "util")); string(data) != "na\n" {
		t.Errorf("gpu1/util = %q", data)
	}

	needGCC(t)
	lib := filepath.Join(t.TempDir(), "lib")
	if code, _, stderr := run("build", lib); code != 0 {
		t.Fatalf("build: %s", stderr)
	}
	for _, name := range []string{CUDALib, NVMLLib} {
		if _, err := os.Stat(filepath.Join(lib, name)); err != nil {
			t.Error(err)
		}
	}
}

// driverSource is a C program the tests run as a child process to drive the
// fake libraries the way a real client would: it dlopens libcuda.so.1 and
// libnvidia-ml.so.1 by soname (so LD_LIBRARY_PATH must point at the built
// libraries) and runs the commands given as arguments, printing one line
// per command: its name, the result code, then any values.
//
// Commands (arguments separated by ':'):
//
//	pid                 print this process's pid
//	syms                check that every contract symbol is exported
//	wait                print "waiting" and block until a line (or EOF) on stdin
//	sleep:MS            sleep MS milliseconds
//
//	init                cuInit(0)
//	count               cuDeviceGetCount
//	get:K               cuDeviceGet(K)
//	uuids               cuDeviceGetUuid of every device, as hex
//	name:K total:K      cuDeviceGetName, cuDeviceTotalMem_v2
//	attr:A:K            cuDeviceGetAttribute(A, K)
//	ctx:K               cuCtxCreate_v2 on device K (becomes "the" context)
//	destroy             cuCtxDestroy_v2 of the context
//	setcur:0|1          cuCtxSetCurrent(NULL) or of the context
//	thread              on a new thread: cuCtxGetCurrent and cuMemAlloc_v2
//	alloc:BYTES         cuMemAlloc_v2 (becomes "the" pointer)
//	free                cuMemFree_v2 of the pointer
//	memset:OFF:N        cuMemsetD8_v2(pointer+OFF, N bytes)
//	meminfo             cuMemGetInfo_v2
//	load:good|noentry|nover  cuModuleLoadDataEx with an error log buffer
//	func:NAME           cuModuleGetFunction (becomes "the" function)
//	unload              cuModuleUnload
//	launch:NS:N[:GX:BX] N launches of the function, each spinning NS ns
//	sync                cuCtxSynchronize, printing how long it took (ms)
//	errname:C errstr:C  cuGetErrorName, cuGetErrorString
//
//	ninit nshutdown     nvmlInit_v2, nvmlShutdown
//	ncount              nvmlDeviceGetCount_v2
//	ndev:I              nvmlDeviceGetName/UUID/Index/ComputeMode/MigMode/
//	                    CudaComputeCapability/Temperature/PowerUsage of device I
//	nbyuuid:UUID        nvmlDeviceGetHandleByUUID, printing the index
//	nmem:I              nvmlDeviceGetMemoryInfo: total free used
//	nprocs:I            nvmlDeviceGetComputeRunningProcesses_v3, growing the buffer
//	nprocs0:I           the same with count 0 and no array
//	nutil:I             nvmlDeviceGetUtilizationRates: gpu memory
//	nputil:I            nvmlDeviceGetProcessUtilization, count first
//	npower:I            nvmlDeviceGetPowerUsage
//	nsys                nvmlSystemGetDriverVersion, nvmlSystemGetCudaDriverVersion
//	nerr:C              nvmlErrorString
const driverSource = `
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *cu, *nv;

static void *sym(void *lib, const char *name)
{
	void *p = dlsym(lib, name);
	if (p == NULL) {
		printf("missing symbol %s\n", name);
		exit(3);
	}
	return p;
}

/* F(lib, name, ret, params) is the library function name, typed. */
#define F(lib, name, ret, params) ((ret (*) params)sym(lib, #name))

typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned gpu, memory; } util_t;
typedef struct { unsigned pid; unsigned long long used; unsigned gi, ci; } pinfo_t;
typedef struct { unsigned pid; unsigned long long ts; unsigned sm, mem, enc, dec; } psample_t;

static void *ctx, *mod, *fn;
static unsigned long long ptr;

static const char *good_ptx =
	".version 7.0\n.target sm_50\n.address_size 64\n\n"
	".visible .entry spin(\n\t.param .u64 ns\n)\n{\n\tret;\n}\n";
static const char *noentry_ptx = ".version 7.0\n.target sm_50\n.address_size 64\n";
static const char *nover_ptx = ".target sm_50\n.visible .entry spin()\n{\n\tret;\n}\n";

static const char *cuda_syms[] = {
	"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
	"cuDeviceGetUuid", "cuDeviceGetUuid_v2", "cuDeviceTotalMem_v2", "cuDeviceGetAttribute",
	"cuCtxCreate_v2", "cuCtxDestroy_v2", "cuCtxSetCurrent", "cuCtxGetCurrent",
	"cuCtxSynchronize", "cuMemAlloc_v2", "cuMemFree_v2", "cuMemsetD8_v2", "cuMemGetInfo_v2",
	"cuModuleLoadDataEx", "cuModuleGetFunction", "cuModuleUnload", "cuLaunchKernel",
	"cuGetErrorName", "cuGetErrorString", NULL,
};
static const char *nvml_syms[] = {
	"nvmlInit_v2", "nvmlInitWithFlags", "nvmlInit", "nvmlShutdown", "nvmlErrorString",
	"nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion",
	"nvmlSystemGetCudaDriverVersion_v2", "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount",
	"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetHandleByUUID",
	"nvmlDeviceGetIndex", "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo",
	"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetComputeRunningProcesses_v3",
	"nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetProcessUtilization",
	"nvmlDeviceGetComputeMode", "nvmlDeviceGetMigMode", "nvmlDeviceGetPowerUsage",
	"nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetTemperature",
	"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetMemoryInfo_v2", NULL,
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void *thread_main(void *arg)
{
	void *cur = (void *)1;
	unsigned long long p;
	int rc1 = F(cu, cuCtxGetCurrent, int, (void **))(&cur);
	int rc2 = F(cu, cuMemAlloc_v2, int, (unsigned long long *, size_t))(&p, 1);
	printf("thread %d %d %d\n", rc1, cur == NULL, rc2);
	(void)arg;
	return NULL;
}

static void *nvml_dev(unsigned i)
{
	void *d = NULL;
	F(nv, nvmlDeviceGetHandleByIndex_v2, int, (unsigned, void **))(i, &d);
	return d;
}

static void run(char *cmd)
{
	char *args[8] = {0};
	int n = 0, rc, i, v;
	char *save, *tok;

	for (tok = strtok_r(cmd, ":", &save); tok != NULL && n < 8; tok = strtok_r(NULL, ":", &save))
		args[n++] = tok;
	if (n == 0)
		return;
#define ARG(k) (args[k] ? args[k] : "0")
#define IARG(k) atoi(ARG(k))
#define ULLARG(k) strtoull(ARG(k), NULL, 10)
	if (!strcmp(args[0], "pid")) {
		printf("pid %d\n", (int)getpid());
	} else if (!strcmp(args[0], "syms")) {
		printf("syms");
		for (i = 0; cuda_syms[i]; i++)
			if (!dlsym(cu, cuda_syms[i]))
				printf(" %s", cuda_syms[i]);
		for (i = 0; nvml_syms[i]; i++)
			if (!dlsym(nv, nvml_syms[i]))
				printf(" %s", nvml_syms[i]);
		printf(" done\n");
	} else if (!strcmp(args[0], "wait")) {
		char line[64];
		printf("waiting\n");
		fflush(stdout);
		if (fgets(line, sizeof line, stdin) == NULL) {
			/* EOF: carry on */
		}
	} else if (!strcmp(args[0], "sleep")) {
		usleep(IARG(1) * 1000);
	} else if (!strcmp(args[0], "init")) {
		printf("init %d\n", F(cu, cuInit, int, (unsigned))(0));
	} else if (!strcmp(args[0], "count")) {
		v = -1;
		rc = F(cu, cuDeviceGetCount, int, (int *))(&v);
		printf("count %d %d\n", rc, v);
	} else if (!strcmp(args[0], "get")) {
		v = -1;
		rc = F(cu, cuDeviceGet, int, (int *, int))(&v, IARG(1));
		printf("get %d %d\n", rc, v);
	} else if (!strcmp(args[0], "uuids")) {
		int count = 0;
		unsigned char u[16];
		F(cu, cuDeviceGetCount, int, (int *))(&count);
		printf("uuids");
		for (i = 0; i < count; i++) {
			F(cu, cuDeviceGetUuid_v2, int, (unsigned char *, int))(u, i);
			printf(" ");
			for (v = 0; v < 16; v++)
				printf("%02x", u[v]);
		}
		printf("\n");
	} else if (!strcmp(args[0], "name")) {
		char buf[256] = "";
		rc = F(cu, cuDeviceGetName, int, (char *, int, int))(buf, sizeof buf, IARG(1));
		printf("name %d %s\n", rc, buf);
	} else if (!strcmp(args[0], "total")) {
		size_t t = 0;
		rc = F(cu, cuDeviceTotalMem_v2, int, (size_t *, int))(&t, IARG(1));
		printf("total %d %zu\n", rc, t);
	} else if (!strcmp(args[0], "attr")) {
		v = -1;
		rc = F(cu, cuDeviceGetAttribute, int, (int *, int, int))(&v, IARG(1), IARG(2));
		printf("attr %d %d\n", rc, v);
	} else if (!strcmp(args[0], "ctx")) {
		printf("ctx %d\n", F(cu, cuCtxCreate_v2, int, (void **, unsigned, int))(&ctx, 0, IARG(1)));
	} else if (!strcmp(args[0], "destroy")) {
		printf("destroy %d\n", F(cu, cuCtxDestroy_v2, int, (void *))(ctx));
	} else if (!strcmp(args[0], "setcur")) {
		printf("setcur %d\n", F(cu, cuCtxSetCurrent, int, (void *))(IARG(1) ? ctx : NULL));
	} else if (!strcmp(args[0], "thread")) {
		pthread_t th;
		pthread_create(&th, NULL, thread_main, NULL);
		pthread_join(th, NULL);
	} else if (!strcmp(args[0], "alloc")) {
		printf("alloc %d\n", F(cu, cuMemAlloc_v2, int, (unsigned long long *, size_t))(&ptr, ULLARG(1)));
	} else if (!strcmp(args[0], "free")) {
		printf("free %d\n", F(cu, cuMemFree_v2, int, (unsigned long long))(ptr));
	} else if (!strcmp(args[0], "memset")) {
		rc = F(cu, cuMemsetD8_v2, int, (unsigned long long, unsigned char, size_t))(
			ptr + ULLARG(1), 0xab, ULLARG(2));
		printf("memset %d\n", rc);
	} else if (!strcmp(args[0], "meminfo")) {
		size_t fr = 0, to = 0;
		rc = F(cu, cuMemGetInfo_v2, int, (size_t *, size_t *))(&fr, &to);
		printf("meminfo %d %zu %zu\n", rc, fr, to);
	} else if (!strcmp(args[0], "load")) {
		char log[256];
		int opts[2] = {5, 6};
		void *vals[2] = {log, (void *)(size_t)sizeof log};
		const char *ptx = !strcmp(ARG(1), "good") ? good_ptx :
				  !strcmp(ARG(1), "noentry") ? noentry_ptx : nover_ptx;
		memset(log, 'x', sizeof log);
		log[sizeof log - 1] = 0;
		rc = F(cu, cuModuleLoadDataEx, int, (void **, const void *, unsigned, int *, void **))(
			&mod, ptx, 2, opts, vals);
		printf("load %d %zu %s\n", rc, (size_t)vals[1], log);
	} else if (!strcmp(args[0], "func")) {
		printf("func %d\n", F(cu, cuModuleGetFunction, int, (void **, void *, const char *))(&fn, mod, ARG(1)));
	} else if (!strcmp(args[0], "unload")) {
		printf("unload %d\n", F(cu, cuModuleUnload, int, (void *))(mod));
	} else if (!strcmp(args[0], "launch")) {
		unsigned long long ns = ULLARG(1);
		void *params[1] = {&ns};
		unsigned gx = args[3] ? (unsigned)IARG(3) : 1, bx = args[4] ? (unsigned)IARG(4) : 1;
		rc = 0;
		for (i = 0; i < IARG(2) && rc == 0; i++)
			rc = F(cu, cuLaunchKernel, int, (void *, unsigned, unsigned, unsigned, unsigned,
							unsigned, unsigned, unsigned, void *, void **, void **))(
				fn, gx, 1, 1, bx, 1, 1, 0, NULL, params, NULL);
		printf("launch %d\n", rc);
	} else if (!strcmp(args[0], "sync")) {
		long long t0 = now_ms();
		rc = F(cu, cuCtxSynchronize, int, (void))();
		printf("sync %d %lld\n", rc, now_ms() - t0);
	} else if (!strcmp(args[0], "errname") || !strcmp(args[0], "errstr")) {
		const char *s = NULL;
		if (!strcmp(args[0], "errname"))
			rc = F(cu, cuGetErrorName, int, (int, const char **))(IARG(1), &s);
		else
			rc = F(cu, cuGetErrorString, int, (int, const char **))(IARG(1), &s);
		printf("%s %d %s\n", args[0], rc, s ? s : "(null)");
	} else if (!strcmp(args[0], "ninit")) {
		printf("ninit %d\n", F(nv, nvmlInit_v2, int, (void))());
	} else if (!strcmp(args[0], "nshutdown")) {
		printf("nshutdown %d\n", F(nv, nvmlShutdown, int, (void))());
	} else if (!strcmp(args[0], "ncount")) {
		unsigned c = 12345;
		rc = F(nv, nvmlDeviceGetCount_v2, int, (unsigned *))(&c);
		printf("ncount %d %u\n", rc, c);
	} else if (!strcmp(args[0], "ndev")) {
		void *d = NULL;
		char name[96] = "", uuid[80] = "";
		unsigned idx = 0, cur = 9, pend = 9, temp = 0, mw = 0;
		int mode = -1, ma = -1, mi = -1;
		rc = F(nv, nvmlDeviceGetHandleByIndex_v2, int, (unsigned, void **))(IARG(1), &d);
		printf("ndev %d", rc);
		printf(" %d", F(nv, nvmlDeviceGetName, int, (void *, char *, unsigned))(d, name, sizeof name));
		printf(" %d", F(nv, nvmlDeviceGetUUID, int, (void *, char *, unsigned))(d, uuid, sizeof uuid));
		printf(" %d", F(nv, nvmlDeviceGetIndex, int, (void *, unsigned *))(d, &idx));
		printf(" %d", F(nv, nvmlDeviceGetComputeMode, int, (void *, int *))(d, &mode));
		printf(" %d", F(nv, nvmlDeviceGetMigMode, int, (void *, unsigned *, unsigned *))(d, &cur, &pend));
		printf(" %d", F(nv, nvmlDeviceGetCudaComputeCapability, int, (void *, int *, int *))(d, &ma, &mi));
		printf(" %d", F(nv, nvmlDeviceGetTemperature, int, (void *, int, unsigned *))(d, 0, &temp));
		printf(" %d", F(nv, nvmlDeviceGetPowerUsage, int, (void *, unsigned *))(d, &mw));
		printf(" name=%s uuid=%s index=%u mode=%d mig=%u/%u cc=%d.%d temp=%u power=%u\n",
		       name, uuid, idx, mode, cur, pend, ma, mi, temp, mw);
	} else if (!strcmp(args[0], "nbyuuid")) {
		void *d = NULL;
		unsigned idx = 999;
		rc = F(nv, nvmlDeviceGetHandleByUUID, int, (const char *, void **))(ARG(1), &d);
		if (rc == 0)
			F(nv, nvmlDeviceGetIndex, int, (void *, unsigned *))(d, &idx);
		printf("nbyuuid %d %u\n", rc, idx);
	} else if (!strcmp(args[0], "nmem")) {
		mem_t m = {0, 0, 0};
		rc = F(nv, nvmlDeviceGetMemoryInfo, int, (void *, mem_t *))(nvml_dev(IARG(1)), &m);
		printf("nmem %d %llu %llu %llu\n", rc, m.total, m.free, m.used);
	} else if (!strcmp(args[0], "nprocs")) {
		/*
		 * A client's loop: start with room for one, double on
		 * INSUFFICIENT_SIZE. A guard entry past the end catches overruns.
		 */
		unsigned count = 1, room;
		pinfo_t *infos = NULL;
		for (;;) {
			room = count;
			infos = realloc(infos, (room + 1) * sizeof *infos);
			infos[room].pid = 0xdeadbeef;
			rc = F(nv, nvmlDeviceGetComputeRunningProcesses_v3, int, (void *, unsigned *, pinfo_t *))(
				nvml_dev(IARG(1)), &count, infos);
			if (infos[room].pid != 0xdeadbeef)
				printf("nprocs overrun\n");
			if (rc != 7)
				break;
			count *= 2;
		}
		printf("nprocs %d", rc);
		for (i = 0; rc == 0 && i < (int)count; i++)
			printf(" %u:%llu:%x:%x", infos[i].pid, infos[i].used, infos[i].gi, infos[i].ci);
		printf("\n");
		free(infos);
	} else if (!strcmp(args[0], "nprocs0")) {
		/* Asking for the count alone. */
		unsigned count = 0;
		rc = F(nv, nvmlDeviceGetComputeRunningProcesses_v3, int, (void *, unsigned *, pinfo_t *))(
			nvml_dev(IARG(1)), &count, NULL);
		printf("nprocs0 %d %u\n", rc, count);
	} else if (!strcmp(args[0], "nutil")) {
		util_t u = {777, 777};
		rc = F(nv, nvmlDeviceGetUtilizationRates, int, (void *, util_t *))(nvml_dev(IARG(1)), &u);
		printf("nutil %d %u %u\n", rc, u.gpu, u.memory);
	} else if (!strcmp(args[0], "nputil")) {
		/* The documented protocol: ask for the count with NULL, then fill. */
		unsigned count = 0;
		psample_t *s;
		void *d = nvml_dev(IARG(1));
		rc = F(nv, nvmlDeviceGetProcessUtilization, int, (void *, psample_t *, unsigned *, unsigned long long))(
			d, NULL, &count, 0);
		printf("nputil %d", rc);
		if (rc == 7 && count > 0) {
			s = calloc(count, sizeof *s);
			rc = F(nv, nvmlDeviceGetProcessUtilization, int, (void *, psample_t *, unsigned *, unsigned long long))(
				d, s, &count, 0);
			printf(" %d", rc);
			for (i = 0; rc == 0 && i < (int)count; i++)
				printf(" %u:%u:%d", s[i].pid, s[i].sm, s[i].ts > 1000000000000000ULL);
			free(s);
		}
		printf("\n");
	} else if (!strcmp(args[0], "npower")) {
		unsigned mw = 0;
		rc = F(nv, nvmlDeviceGetPowerUsage, int, (void *, unsigned *))(nvml_dev(IARG(1)), &mw);
		printf("npower %d %u\n", rc, mw);
	} else if (!strcmp(args[0], "nsys")) {
		char ver[80] = "";
		int cv = 0;
		rc = F(nv, nvmlSystemGetDriverVersion, int, (char *, unsigned))(ver, sizeof ver);
		printf("nsys %d", rc);
		rc = F(nv, nvmlSystemGetCudaDriverVersion_v2, int, (int *))(&cv);
		printf(" %d %s %d\n", rc, ver, cv);
	} else if (!strcmp(args[0], "nerr")) {
		printf("nerr %s\n", F(nv, nvmlErrorString, const char *, (int))(IARG(1)));
	} else {
		printf("unknown command %s\n", args[0]);
		exit(2);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int i;

	cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	nv = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (cu == NULL || nv == NULL) {
		printf("dlopen: %s\n", dlerror());
		return 3;
	}
	for (i = 1; i < argc; i++)
		run(argv[i]);
	return 0;
}
`

// TestBuildNVMLHides checks that an NVML built without some symbols lacks
// exactly those, and that a symbol the sources cannot hide is refused.
func TestBuildNVMLHides(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	if err := BuildNVML(t.TempDir(), "nvmlDeviceGetName"); err == nil {
		t.Error("BuildNVML hid a symbol every driver has")
	}
	tests := []struct {
		name string
		hide []string
	}{
		{"none", nil},
		{"processes v3", []string{"nvmlDeviceGetComputeRunningProcesses_v3"}},
		{"all", HideableNVML},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := BuildNVML(dir, tt.hide...); err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(filepath.Join(dir, NVMLLib))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			syms, err := f.DynamicSymbols()
			if err != nil {
				t.Fatal(err)
			}
			exported := map[string]bool{}
			for _, s := range syms {
				if s.Section != elf.SHN_UNDEF {
					exported[s.Name] = true
				}
			}
			for _, sym := range append(HideableNVML, "nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
				"nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses") {
				if hidden := slices.Contains(tt.hide, sym); exported[sym] == hidden {
					t.Errorf("%s exported: %v, want %v", sym, exported[sym], !hidden)
				}
			}
		})
	}
}
