//go:build !linux

package learn

func threadCPU() int64 { return 0 }

func lockThread() func() { return func() {} }

func processCPU() int64 { return 0 }
