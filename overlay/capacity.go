package overlay

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// SystemFree returns a capacity function for WithFree that reports the
// given work slots, the CPU cores not busy (from the load average), free
// memory (MemAvailable) and free disk under dir. Figures it cannot read are
// left at 0.
func SystemFree(dir string, slots int64) func() Capacity {
	return func() Capacity {
		c := Capacity{Slots: slots}
		busy := float64(SystemCPU()) / 100 * float64(runtime.NumCPU())
		c.Cores = max(0, int64(float64(runtime.NumCPU())-busy))
		if data, err := os.ReadFile("/proc/meminfo"); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
					if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
						c.MemoryMB = kb / 1024
					}
				}
			}
		}
		if dir != "" {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err == nil {
				c.DiskMB = int64(st.Bavail) * int64(st.Bsize) >> 20
			}
		}
		return c
	}
}
