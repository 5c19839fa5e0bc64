// Package fakegpu builds and drives the fake GPU driver libraries the tests load in place of NVIDIA's.
//
// The fake libcuda.so.1 and libnvidia-ml.so.1 are C sources embedded in
// this package (csrc/) and compiled with gcc by [Build]. Both read the
// simulated node from the state directory named by the FAKEGPU_DIR
// environment variable; see csrc/fakenode.h for its layout. A [Node] is
// such a directory plus a directory holding the built libraries, and its
// methods let tests set up the node and inspect what processes did to it.
// [Main] offers the same operations as a command for shell scripts.
package fakegpu

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

//go:embed csrc/*.c csrc/*.h
var sources embed.FS

// The sonames of the fake libraries, which are also their file names.
const (
	CUDALib = "libcuda.so.1"
	NVMLLib = "libnvidia-ml.so.1"
)

// MaxGPUs is the largest number of GPUs a node can have.
const MaxGPUs = 64

// libs maps each library to the C file it is built from.
var libs = []struct{ name, src string }{
	{CUDALib, "fakecuda.c"},
	{NVMLLib, "fakenvml.c"},
}

// cflags are the gcc flags every library is built with (plus -o, the
// soname and -lpthread).
var cflags = []string{"-shared", "-fPIC", "-O2", "-Wall", "-Werror"}

// stampFile, in a library directory, holds the hash of the sources and
// flags the libraries there were built from.
const stampFile = ".fakegpu-stamp"

// Build compiles libcuda.so.1 and libnvidia-ml.so.1 into dir (gcc -shared
// -fPIC -O2 -Wall -Werror, -Wl,-soname,<name>, -lpthread), creating dir if
// needed. Callers set LD_LIBRARY_PATH to dir.
func Build(dir string) error {
	gcc, src, err := prepare(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)

	// Build the libraries in parallel; gcc takes most of Build's time.
	errs := make([]error, len(libs))
	var wg sync.WaitGroup
	for i, lib := range libs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = buildLib(gcc, src, dir, lib.name, lib.src, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, stampFile), []byte(sourceHash()+"\n"), 0o644)
}

// buildLib compiles the C file src (in srcDir) into the library name in
// dir, with the extra gcc flags. It builds under a temporary name and
// renames, so that a process loading the library never sees a half-written
// file.
func buildLib(gcc, srcDir, dir, name, src string, flags []string) error {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	args := append(append(append([]string{}, cflags...), flags...),
		"-Wl,-soname,"+name, "-o", tmp, filepath.Join(srcDir, src), "-lpthread")
	cmd := exec.Command(gcc, args...)
	cmd.Dir = srcDir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fakegpu: building %s: %v\n%s", name, err, out)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// HideableNVML are the NVML symbols [BuildNVML] can leave out: the newer
// names of versioned calls and the calls keepgpu treats as optional. The
// unversioned names stay, as in every NVIDIA driver.
var HideableNVML = []string{
	"nvmlInit_v2",
	"nvmlErrorString",
	"nvmlDeviceGetCount_v2",
	"nvmlDeviceGetHandleByIndex_v2",
	"nvmlDeviceGetMemoryInfo_v2",
	"nvmlDeviceGetComputeRunningProcesses_v3",
	"nvmlDeviceGetComputeRunningProcesses_v2",
	"nvmlDeviceGetProcessUtilization",
	"nvmlDeviceGetMigMode",
	"nvmlDeviceGetPowerUsage",
}

// BuildNVML compiles libnvidia-ml.so.1 alone into dir without the symbols
// in hide (each one of [HideableNVML]), as an older driver's library
// lacks them: fakenvml.c is compiled with -DFAKENVML_HIDE_<symbol> for
// each. dir must not be a directory [Build] maintains.
func BuildNVML(dir string, hide ...string) error {
	var flags []string
	for _, sym := range hide {
		ok := false
		for _, h := range HideableNVML {
			ok = ok || h == sym
		}
		if !ok {
			return fmt.Errorf("fakegpu: cannot hide %q: want one of %s", sym, strings.Join(HideableNVML, ", "))
		}
		flags = append(flags, "-DFAKENVML_HIDE_"+sym)
	}
	gcc, src, err := prepare(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	return buildLib(gcc, src, dir, NVMLLib, "fakenvml.c", flags)
}

// prepare creates dir, finds gcc and writes the embedded C sources into a
// new temporary directory, src, which the caller removes.
func prepare(dir string) (gcc, src string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	gcc, err = exec.LookPath("gcc")
	if err != nil {
		return "", "", fmt.Errorf("fakegpu: building the fake GPU libraries needs gcc: %w", err)
	}
	src, err = os.MkdirTemp("", "fakegpu-src-")
	if err != nil {
		return "", "", err
	}
	if err := writeSources(src); err != nil {
		os.RemoveAll(src)
		return "", "", err
	}
	return gcc, src, nil
}

// writeSources writes the embedded C sources into dir.
func writeSources(dir string) error {
	return fs.WalkDir(sources, "csrc", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := sources.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, d.Name()), data, 0o644)
	})
}

// sourceHash identifies the embedded sources and the build flags.
func sourceHash() string {
	h := sha256.New()
	fmt.Fprintln(h, strings.Join(cflags, " "))
	fs.WalkDir(sources, "csrc", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := sources.ReadFile(path)
			fmt.Fprintf(h, "%s %d\n", path, len(data))
			h.Write(data)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// buildMu serializes ensureBuilt within the process.
var buildMu sync.Mutex

// ensureBuilt builds the libraries into dir unless they are there already,
// built from the same sources.
func ensureBuilt(dir string) error {
	buildMu.Lock()
	defer buildMu.Unlock()
	stamp, err := os.ReadFile(filepath.Join(dir, stampFile))
	if err == nil && strings.TrimSpace(string(stamp)) == sourceHash() {
		ok := true
		for _, lib := range libs {
			if _, err := os.Stat(filepath.Join(dir, lib.name)); err != nil {
				ok = false
			}
		}
		if ok {
			return nil
		}
	}
	return Build(dir)
}

// Node is a simulated GPU node: a state directory plus the built libraries.
type Node struct {
	Dir    string // the state directory, FAKEGPU_DIR
	LibDir string // where libcuda.so.1 and libnvidia-ml.so.1 are; "" for none
}

// GPU describes one simulated GPU; zero fields take the defaults.
type GPU struct {
	Name  string
	UUID  string
	Total uint64
}

// Configure writes g's non-zero fields as GPU gpu's settings.
func (n *Node) Configure(gpu int, g GPU) error {
	if g.Name != "" {
		if err := n.Set(gpu, "name", g.Name); err != nil {
			return err
		}
	}
	if g.UUID != "" {
		if err := n.Set(gpu, "uuid", g.UUID); err != nil {
			return err
		}
	}
	if g.Total != 0 {
		if err := n.Set(gpu, "total", strconv.FormatUint(g.Total, 10)); err != nil {
			return err
		}
	}
	return nil
}

// NewNode creates (or resets the GPU count of) the node in stateDir with
// gpus GPUs: it writes "devices" and creates gpu<i>/procs. Unless libDir
// is "", it also builds the libraries into libDir, unless libDir already
// holds libraries built from the same sources (so nodes can share one).
// Both paths are made absolute.
func NewNode(stateDir, libDir string, gpus int) (*Node, error) {
	if gpus < 0 || gpus > MaxGPUs {
		return nil, fmt.Errorf("fakegpu: %d GPUs: want 0..%d", gpus, MaxGPUs)
	}
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	n := &Node{Dir: dir}
	if libDir != "" {
		if n.LibDir, err = filepath.Abs(libDir); err != nil {
			return nil, err
		}
		if err := ensureBuilt(n.LibDir); err != nil {
			return nil, err
		}
	}
	for i := 0; i < gpus; i++ {
		if err := os.MkdirAll(n.procsDir(i), 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeAtomic(filepath.Join(dir, "devices"), strconv.Itoa(gpus)+"\n"); err != nil {
		return nil, err
	}
	return n, nil
}

// Env returns the environment entries that make a child process use the
// node: FAKEGPU_DIR, and LD_LIBRARY_PATH with LibDir put in front of this
// process's value. Append them to os.Environ(); later entries win.
func (n *Node) Env() []string {
	env := []string{"FAKEGPU_DIR=" + n.Dir}
	if n.LibDir != "" {
		ld := n.LibDir
		if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
			ld += string(filepath.ListSeparator) + old
		}
		env = append(env, "LD_LIBRARY_PATH="+ld)
	}
	return env
}

// GPUs returns the number of GPUs the node has.
func (n *Node) GPUs() (int, error) {
	data, err := os.ReadFile(filepath.Join(n.Dir, "devices"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// settingRE checks the values of the per-GPU settings.
var settingRE = map[string]*regexp.Regexp{
	"name":         regexp.MustCompile(`^[^\n]+$`),
	"uuid":         regexp.MustCompile(`^[^\n]+$`),
	"total":        regexp.MustCompile(`^[0-9]+$`),
	"util":         regexp.MustCompile(`^([0-9]+|na)$`),
	"compute_mode": regexp.MustCompile(`^[0-3]$`),
	"mig":          regexp.MustCompile(`^[01]$`),
	"power":        regexp.MustCompile(`^[0-9]+$`),
	"reserved":     regexp.MustCompile(`^[0-9]+$`),
	"cc":           regexp.MustCompile(`^[0-9]+\.[0-9]+$`),
	"hostmap":      regexp.MustCompile(`^[01]$`),
}

// Set writes GPU gpu's setting key (name, uuid, total, util,
// compute_mode, mig, power, reserved, cc or hostmap) as value. Running
// processes see the change on their next call.
func (n *Node) Set(gpu int, key, value string) error {
	re, ok := settingRE[key]
	if !ok {
		return fmt.Errorf("fakegpu: unknown GPU setting %q", key)
	}
	if !re.MatchString(value) {
		return fmt.Errorf("fakegpu: bad value %q for GPU setting %s", value, key)
	}
	if err := n.checkGPU(gpu); err != nil {
		return err
	}
	if err := os.MkdirAll(n.gpuDir(gpu), 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(n.gpuDir(gpu), key), value+"\n")
}

// SetInitError makes cuInit (lib "cuda"), nvmlInit* ("nvml"), hipInit
// ("hip"), rsmi_init ("rocm_smi") or amdsmi_init ("amd_smi") fail with
// code.
func (n *Node) SetInitError(lib string, code int) error {
	path, err := n.initErrorPath(lib)
	if err != nil {
		return err
	}
	return writeAtomic(path, strconv.Itoa(code)+"\n")
}

// ClearInitError undoes SetInitError.
func (n *Node) ClearInitError(lib string) error {
	path, err := n.initErrorPath(lib)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (n *Node) initErrorPath(lib string) (string, error) {
	if lib != "cuda" && lib != "nvml" && lib != "hip" && lib != "rocm_smi" && lib != "amd_smi" {
		return "", fmt.Errorf("fakegpu: unknown library %q: want cuda, nvml, hip, rocm_smi or amd_smi", lib)
	}
	return filepath.Join(n.Dir, lib+"_init_error"), nil
}

// UUID returns GPU gpu's UUID as NVML prints it ("GPU-..."): the uuid
// setting, or the default GPU-00000000-0000-4000-8000-0000000000<ii>.
func (n *Node) UUID(gpu int) string {
	if data, err := os.ReadFile(filepath.Join(n.gpuDir(gpu), "uuid")); err == nil {
		if s := strings.TrimSpace(string(data)); s != "" {
			return s
		}
	}
	return fmt.Sprintf("GPU-00000000-0000-4000-8000-0000000000%02x", gpu&0xff)
}

// AddProcess records a foreign compute process pid on GPU gpu holding one
// context and bytes of memory. It counts only while pid is alive.
func (n *Node) AddProcess(gpu, pid int, bytes uint64) error {
	if err := n.checkGPU(gpu); err != nil {
		return err
	}
	if pid <= 0 {
		return fmt.Errorf("fakegpu: bad pid %d", pid)
	}
	if err := os.MkdirAll(n.procsDir(gpu), 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(n.procsDir(gpu), strconv.Itoa(pid)),
		fmt.Sprintf("contexts 1\nbytes %d\n", bytes))
}

// RemoveProcess deletes pid's record on GPU gpu, if there is one.
func (n *Node) RemoveProcess(gpu, pid int) error {
	err := os.Remove(filepath.Join(n.procsDir(gpu), strconv.Itoa(pid)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Proc is one process record of a GPU.
type Proc struct {
	PID           int
	Contexts      int
	Bytes         uint64
	Launches      int
	Alive         bool  // the pid names a live process
	LastKernelEnd int64 // CLOCK_MONOTONIC ns of the latest kernel end; 0 if none
}

// Procs returns every record of GPU gpu, dead pids included, sorted by pid.
func (n *Node) Procs(gpu int) ([]Proc, error) {
	entries, err := os.ReadDir(n.procsDir(gpu))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var procs []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || strconv.Itoa(pid) != e.Name() {
			continue // a writer's temporary file
		}
		data, err := os.ReadFile(filepath.Join(n.procsDir(gpu), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return nil, err
		}
		p := parseProc(data)
		p.PID = pid
		p.Alive = Alive(pid)
		procs = append(procs, p)
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].PID < procs[j].PID })
	return procs, nil
}

// parseProc reads a record's lines, ignoring anything it does not know.
func parseProc(data []byte) Proc {
	var p Proc
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "contexts":
			p.Contexts, _ = strconv.Atoi(f[1])
		case "bytes":
			p.Bytes, _ = strconv.ParseUint(f[1], 10, 64)
		case "launches":
			p.Launches, _ = strconv.Atoi(f[1])
		case "kernel":
			if len(f) >= 3 {
				if end, err := strconv.ParseInt(f[2], 10, 64); err == nil && end > p.LastKernelEnd {
					p.LastKernelEnd = end
				}
			}
		}
	}
	return p
}

// Alive reports whether pid names a live process, by the rule the fake
// libraries use: kill(pid, 0) succeeds or fails with EPERM. A zombie
// counts as alive, so wait for exited children before relying on this.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (n *Node) gpuDir(gpu int) string { return filepath.Join(n.Dir, "gpu"+strconv.Itoa(gpu)) }

func (n *Node) procsDir(gpu int) string { return filepath.Join(n.gpuDir(gpu), "procs") }

// checkGPU reports an error unless the node has GPU gpu.
func (n *Node) checkGPU(gpu int) error {
	count, err := n.GPUs()
	if err != nil {
		return err
	}
	if gpu < 0 || gpu >= count {
		return fmt.Errorf("fakegpu: no GPU %d: the node has %d", gpu, count)
	}
	return nil
}

// writeAtomic replaces path with data by writing a temporary file in the
// same directory (a name the libraries ignore) and renaming it.
func writeAtomic(path, data string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

const usage = `usage: fakegpu COMMAND ARGS...
  build DIR                            build the fake libraries into DIR
  init DIR GPUS                        create a node with GPUS GPUs in DIR
  set DIR GPU KEY VALUE                set a GPU setting (name uuid total util compute_mode mig power reserved cc hostmap)
  init-error DIR LIB CODE|clear        make cuInit/nvmlInit/hipInit/rsmi_init/amdsmi_init (LIB cuda, nvml, hip, rocm_smi, amd_smi) fail with CODE, or not
  add-proc DIR GPU PID BYTES           record a foreign compute process
  rm-proc DIR GPU PID                  delete a process record
  procs DIR GPU                        print "pid contexts bytes launches alive" per record
  uuid DIR GPU                         print a GPU's UUID
`

// Main runs the fakegpu command with args (not including the program
// name) and returns its exit status: 0, 1 on failure, 2 on misuse.
func Main(args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "fakegpu:", strings.TrimPrefix(err.Error(), "fakegpu: "))
		return 1
	}
	misuse := func(msg string) int {
		if msg != "" {
			fmt.Fprintln(stderr, "fakegpu:", msg)
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	nargs := map[string]int{
		"build": 1, "init": 2, "set": 4, "init-error": 3,
		"add-proc": 4, "rm-proc": 3, "procs": 2, "uuid": 2,
	}
	if len(args) == 0 {
		return misuse("")
	}
	want, ok := nargs[args[0]]
	if !ok {
		return misuse(fmt.Sprintf("unknown command %q", args[0]))
	}
	if len(args)-1 != want {
		return misuse(fmt.Sprintf("%s takes %d arguments", args[0], want))
	}
	cmd, dir, rest := args[0], args[1], args[2:]
	n := &Node{Dir: dir}

	// ints parses the numeric arguments among rest.
	ints := func(ss ...string) ([]int, error) {
		var out []int
		for _, s := range ss {
			v, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number", cmd, s)
			}
			out = append(out, v)
		}
		return out, nil
	}

	switch cmd {
	case "build":
		if err := Build(dir); err != nil {
			return fail(err)
		}
	case "init":
		v, err := ints(rest[0])
		if err != nil {
			return misuse(err.Error())
		}
		if _, err := NewNode(dir, "", v[0]); err != nil {
			return fail(err)
		}
	case "set":
		v, err := ints(rest[0])
		if err != nil {
			return misuse(err.Error())
		}
		if err := n.Set(v[0], rest[1], rest[2]); err != nil {
			return fail(err)
		}
	case "init-error":
		if rest[1] == "clear" {
			if err := n.ClearInitError(rest[0]); err != nil {
				return fail(err)
			}
			break
		}
		v, err := ints(rest[1])
		if err != nil {
			return misuse(err.Error())
		}
		if err := n.SetInitError(rest[0], v[0]); err != nil {
			return fail(err)
		}
	case "add-proc":
		v, err := ints(rest[0], rest[1])
		if err != nil {
			return misuse(err.Error())
		}
		size, err := strconv.ParseUint(rest[2], 10, 64)
		if err != nil {
			return misuse(fmt.Sprintf("add-proc: %q is not a byte count", rest[2]))
		}
		if err := n.AddProcess(v[0], v[1], size); err != nil {
			return fail(err)
		}
	case "rm-proc":
		v, err := ints(rest[0], rest[1])
		if err != nil {
			return misuse(err.Error())
		}
		if err := n.RemoveProcess(v[0], v[1]); err != nil {
			return fail(err)
		}
	case "procs":
		v, err := ints(rest[0])
		if err != nil {
			return misuse(err.Error())
		}
		procs, err := n.Procs(v[0])
		if err != nil {
			return fail(err)
		}
		for _, p := range procs {
			fmt.Fprintf(stdout, "%d %d %d %d %t\n", p.PID, p.Contexts, p.Bytes, p.Launches, p.Alive)
		}
	case "uuid":
		v, err := ints(rest[0])
		if err != nil {
			return misuse(err.Error())
		}
		fmt.Fprintln(stdout, n.UUID(v[0]))
	}
	return 0
}
