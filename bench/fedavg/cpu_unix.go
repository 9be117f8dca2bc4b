//go:build unix

package main

import "syscall"

// processCPU is the CPU time (user+system) this process has used. On a
// shared machine wall time per round includes waiting for a core; this does not.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
