package holder

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// descends reports whether pid is root or one of its descendants,
// following parent links as the kernel reports them now. Orphans of the
// tree count as long as root is their subreaper (keepgpu wrap makes itself
// one).
func descends(pid, root int) bool {
	for i := 0; i < 512 && pid > 1; i++ { // the bound only guards against a pid cycle while processes come and go
		if pid == root {
			return true
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		if pid, err = parentPID(string(b)); err != nil {
			return false
		}
	}
	return pid == root
}

// parentPID reads the parent's pid from the text of /proc/PID/stat:
// "PID (COMM) STATE PPID …". COMM may hold spaces and parentheses, so the
// fields after it are found after the last ')'.
func parentPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, errors.New("stat: no parent pid")
	}
	return strconv.Atoi(f[1])
}
