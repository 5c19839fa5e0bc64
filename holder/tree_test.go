package holder

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
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
