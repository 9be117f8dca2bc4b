package learn

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time the calling OS thread has used, in ns. On a
// shared machine this measures our work, not the wait for a core, which
// wall-clock ns/op cannot separate. Callers lock the goroutine to its thread.
func threadCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// processCPU is the CPU time of the whole process (all goroutines), in ns.
func processCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
