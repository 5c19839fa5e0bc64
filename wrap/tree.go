package wrap

import "github.com/shirou/gopsutil/v4/process"

// Descends reports whether pid is root or one of its descendants, following
// parent links as the kernel reports them now. Orphans of the tree count as
// long as root is their subreaper (keepgpu wrap makes itself one).
func Descends(pid, root int) bool {
	for i := 0; i < 512 && pid > 1; i++ { // the bound only guards against a pid cycle while processes come and go
		if pid == root {
			return true
		}
		p, err := process.NewProcess(int32(pid))
		if err != nil {
			return false
		}
		ppid, err := p.Ppid()
		if err != nil {
			return false
		}
		pid = int(ppid)
	}
	return pid == root
}
