package service

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The defaults KeepGPU's service uses.
const (
	DefaultHost = "127.0.0.1"
	DefaultPort = 8765
)

// RuntimeDir returns the user's keepgpu runtime directory,
// $XDG_RUNTIME_DIR/keepgpu or $TMPDIR/keepgpu-UID, creating it 0700. It
// refuses a directory that is a symbolic link, belongs to someone else or
// is open to others: the service's token lives there. An XDG_RUNTIME_DIR
// that does not exist or is not the user's (a batch job inherits the login
// node's) is passed over. Inside a Slurm job it is the job's own
// subdirectory, slurm-JOBID: a service lives in the cgroup (and sees the
// GPUs) of the job that started it, so jobs must not share one.
func RuntimeDir() (string, error) {
	dir := filepath.Join(os.TempDir(), "keepgpu-"+strconv.Itoa(os.Getuid()))
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		if fi, err := os.Stat(x); err == nil && fi.IsDir() && owner(fi) == os.Getuid() {
			dir = filepath.Join(x, "keepgpu")
		}
	}
	if err := privateDir(dir); err != nil {
		return "", err
	}
	if job := os.Getenv("SLURM_JOB_ID"); job != "" && strings.Trim(job, "0123456789_") == "" {
		dir = filepath.Join(dir, "slurm-"+job)
		if err := privateDir(dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// privateDir creates dir 0700 if needed and checks it is private.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("runtime dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	if err := private(fi, true); err != nil {
		return fmt.Errorf("runtime dir %s: %w", dir, err)
	}
	return nil
}

func owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// private checks that fi is ours, of the right kind, and closed to others.
func private(fi fs.FileInfo, dir bool) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return errors.New("is a symbolic link")
	case dir && !fi.IsDir():
		return errors.New("not a directory")
	case !dir && !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	case owner(fi) != os.Getuid():
		return fmt.Errorf("owned by uid %d, not by you (uid %d)", owner(fi), os.Getuid())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("mode %04o lets others in; want %04o", fi.Mode().Perm(), fi.Mode().Perm()&0o700)
	}
	return nil
}

// tokenFile is the token's name in the runtime dir.
const tokenFile = "token"

// EnsureToken returns the token in dir, creating it (0600, 32 random bytes
// as hex) if there is none. Every service the user starts shares it.
func EnsureToken(dir string) (string, error) {
	if t, err := ReadToken(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return t, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	path := filepath.Join(dir, tokenFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ReadToken(dir) // another keepgpu made it first
	}
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	// Written whole before anyone can read a partial one: readers retry an
	// empty file (see ReadToken).
	_, err = f.WriteString(tok + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("token: %w", err)
	}
	return tok, nil
}

// ReadToken returns the token in dir. The error wraps fs.ErrNotExist when
// there is none.
func ReadToken(dir string) (string, error) {
	path := filepath.Join(dir, tokenFile)
	for i := 0; ; i++ {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			err = private(fi, false)
		}
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(f, 256))
			b = bytes.TrimSpace(b)
		}
		f.Close()
		if err != nil {
			return "", fmt.Errorf("token %s: %w", path, err)
		}
		if len(b) == 0 && i < 50 {
			time.Sleep(2 * time.Millisecond) // being written by EnsureToken
			continue
		}
		if len(b) < 32 {
			return "", fmt.Errorf("token %s: too short", path)
		}
		return string(b), nil
	}
}

// PIDFile records a running service: written by serve once it listens,
// removed when it exits. service-stop signals the process only if its start
// time and command line still match, so a recycled pid is never signalled.
type PIDFile struct {
	PID       int      `json:"pid"`
	StartTime uint64   `json:"start_time"` // /proc/PID/stat field 22, clock ticks after boot
	Cmdline   []string `json:"cmdline"`
	Addr      string   `json:"addr"` // host:port it listens on
	Log       string   `json:"log,omitempty"`
	Daemon    bool     `json:"daemon"` // started by keepgpu start
	Started   string   `json:"started"`
}

// PIDPath is the PID file of the service asked to listen on port; port 0
// (any free port) has one too, which is how clients find that service.
func PIDPath(dir string, port int) string {
	return filepath.Join(dir, fmt.Sprintf("service-%d.json", port))
}

// LogPath is the log file of the daemon for port.
func LogPath(dir string, port int) string {
	return filepath.Join(dir, fmt.Sprintf("service-%d.log", port))
}

// Self describes this process for its PID file.
func Self(addr string) (PIDFile, error) {
	st, err := ProcStartTime(os.Getpid())
	if err != nil {
		return PIDFile{}, err
	}
	cmd, err := procCmdline(os.Getpid())
	if err != nil {
		return PIDFile{}, err
	}
	return PIDFile{PID: os.Getpid(), StartTime: st, Cmdline: cmd, Addr: addr, Started: time.Now().Format(time.RFC3339)}, nil
}

// WritePIDFile writes p to path (0600) atomically.
func WritePIDFile(path string, p PIDFile) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ReadPIDFile reads the PID file at path; the error wraps fs.ErrNotExist
// when there is none.
func ReadPIDFile(path string) (PIDFile, error) {
	var p PIDFile
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return p, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil {
		err = private(fi, false)
	}
	if err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.NewDecoder(f).Decode(&p); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	if p.PID <= 0 {
		return p, fmt.Errorf("%s: no pid", path)
	}
	return p, nil
}

// RemovePIDFile removes path if it still names this process.
func RemovePIDFile(path string) {
	if p, err := ReadPIDFile(path); err == nil && p.PID == os.Getpid() {
		os.Remove(path)
	}
}

// ErrStale says a PID file names a process that is gone or is no longer
// the service that wrote it.
var ErrStale = errors.New("stale PID file")

// Verify checks that p.PID is still the process that wrote p: alive,
// owned by this user, with the same start time and command line. Only
// then may it be signalled.
func (p PIDFile) Verify() error {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID))
	if err != nil {
		return fmt.Errorf("%w: pid %d is gone", ErrStale, p.PID)
	}
	if uid := owner(fi); uid != os.Getuid() {
		return fmt.Errorf("%w: pid %d belongs to uid %d, not to you", ErrStale, p.PID, uid)
	}
	start, err := ProcStartTime(p.PID)
	if err != nil {
		return fmt.Errorf("%w: pid %d: %v", ErrStale, p.PID, err)
	}
	if start != p.StartTime {
		return fmt.Errorf("%w: pid %d started at tick %d, not %d: another process now", ErrStale, p.PID, start, p.StartTime)
	}
	cmd, err := procCmdline(p.PID)
	if err != nil {
		return fmt.Errorf("%w: pid %d: %v", ErrStale, p.PID, err)
	}
	if strings.Join(cmd, "\x00") != strings.Join(p.Cmdline, "\x00") {
		return fmt.Errorf("%w: pid %d runs %q, not %q", ErrStale, p.PID, cmd, p.Cmdline)
	}
	return nil
}

// ProcStartTime returns field 22 of /proc/PID/stat: when the process
// started, in clock ticks after boot.
func ProcStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself: the fields after it follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
}

func procCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}
