package holder

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParentPID reads /proc/PID/stat lines, command names with spaces and
// parentheses included.
func TestParentPID(t *testing.T) {
	tests := []struct {
		name, stat string
		want       int
		err        bool
	}{
		{name: "plain", stat: "4242 (sleep) S 17 4242 17 0 -1 4194304", want: 17},
		{name: "spaces", stat: "4242 (my prog) R 99 4242 17 0", want: 99},
		{name: "parentheses", stat: "4242 (a) S 5 (b)) S 1234 4242 17 0", want: 1234},
		{name: "newline", stat: "1 (init) S 0 1 1 0\n", want: 0},
		{name: "no command", stat: "4242 sleep S 17", err: true},
		{name: "cut short", stat: "4242 (sleep) S", err: true},
		{name: "not a number", stat: "4242 (sleep) S x 1", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parentPID(tt.stat)
			if tt.err {
				if err == nil {
					t.Fatalf("parentPID(%q) = %d; want an error", tt.stat, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parentPID(%q) = %d, %v; want %d", tt.stat, got, err, tt.want)
			}
		})
	}
}

// TestDescends follows real parent links: a child and a grandchild of this
// process descend from it, this process's parent does not.
func TestDescends(t *testing.T) {
	forget(t)
	self := os.Getpid()
	// sh starts sleep as its child and waits for it.
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var grandchild int
	if _, err := fmt.Fscan(out, &grandchild); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if p, err := os.FindProcess(grandchild); err == nil {
			p.Kill()
		}
	}()
	tests := []struct {
		name      string
		pid, root int
		want      bool
	}{
		{"itself", self, self, true},
		{"child", cmd.Process.Pid, self, true},
		{"grandchild", grandchild, self, true},
		{"grandchild of the child", grandchild, cmd.Process.Pid, true},
		{"parent", os.Getppid(), self, false},
		{"sibling tree", self, cmd.Process.Pid, false},
		{"init", 1, self, false},
		{"no such process", 1 << 30, self, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := descends(tt.pid, tt.root); got != tt.want {
				t.Errorf("descends(%d, %d) = %v; want %v", tt.pid, tt.root, got, tt.want)
			}
		})
	}
}

// forget empties descends' memory for a test, and again after it.
func forget(t *testing.T) {
	t.Helper()
	reset := func() {
		knownMu.Lock()
		defer knownMu.Unlock()
		for k, m := range known {
			m.close()
			delete(known, k)
		}
		walks = 0
	}
	reset()
	t.Cleanup(reset)
}

func walked() int {
	knownMu.Lock()
	defer knownMu.Unlock()
	return walks
}

// startTree starts sh with a sleep as its child, and returns sh and the
// sleep's pid; both end with the test.
func startTree(t *testing.T) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var grandchild int
	if _, err := fmt.Fscan(out, &grandchild); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(grandchild, syscall.SIGKILL)
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, grandchild
}

// TestDescendsRemembers walks /proc once per process: a grandchild of this
// process and a process outside its tree, asked about every window as
// keepgpu wrap's holder does, are found once and then remembered.
func TestDescendsRemembers(t *testing.T) {
	forget(t)
	self := os.Getpid()
	cmd, grandchild := startTree(t)
	for i := 0; i < 5; i++ {
		if !descends(grandchild, self) {
			t.Fatalf("round %d: the grandchild %d does not descend from %d", i, grandchild, self)
		}
		if descends(os.Getppid(), self) {
			t.Fatalf("round %d: the parent %d descends from %d", i, os.Getppid(), self)
		}
	}
	if n := walked(); n != 2 {
		t.Errorf("%d walks of /proc for 2 processes asked about 5 times each; want 2", n)
	}
	// A new process is one more walk.
	if !descends(cmd.Process.Pid, self) || walked() != 3 {
		t.Errorf("the child: %d walks; want 3", walked())
	}
}

// TestDescendsPidReused tells a process from an earlier one with the same
// pid: a grandchild of this process whose pid a foreign process had before
// (simulated: its pid remembered as foreign, with the descriptor of a
// process that has ended) still descends, and the GPU use of the wrapped
// tree's grandchild is not missed.
func TestDescendsPidReused(t *testing.T) {
	forget(t)
	self := os.Getpid()
	_, grandchild := startTree(t)
	gone := exec.Command("true")
	if err := gone.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/stat", gone.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	gone.Wait()
	knownMu.Lock()
	known[treeKey{grandchild, self}] = member{stat: fd, in: false}
	knownMu.Unlock()
	if !descends(grandchild, self) {
		t.Errorf("the grandchild %d, whose pid was remembered as foreign for a process that ended, does not descend", grandchild)
	}
	if n := walked(); n != 1 {
		t.Errorf("%d walks; want 1", n)
	}
}

// TestDescendsForgetsEnded drops a process that ended, so that its pid is
// looked at afresh.
func TestDescendsForgetsEnded(t *testing.T) {
	forget(t)
	self := os.Getpid()
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if !descends(c.Process.Pid, self) {
		t.Fatal("a child does not descend")
	}
	c.Process.Kill()
	c.Wait()
	if descends(c.Process.Pid, self) {
		t.Error("a reaped child still descends")
	}
	knownMu.Lock()
	_, ok := known[treeKey{c.Process.Pid, self}]
	knownMu.Unlock()
	if ok {
		t.Error("a reaped child is still remembered")
	}
}
