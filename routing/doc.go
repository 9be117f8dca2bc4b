// Package routing is the intelligence layer of the draft as pure planners
// over an overlay.Snapshot: T-FAM admits or rejects a training job with
// reasons a person can read, MTRCE chooses the datasets a job trains on and
// where each trains (on the data's own node, or a compute node near it),
// TAG fills the algorithm settings, and Q-FAM and Q-IRCE decide whether a
// query can be served and by which model host. Nothing here does I/O, starts
// goroutines or reads the clock: values go in, decisions come out, so every
// rule is tested exhaustively on small maps. The training and inference
// services call these functions with a fresh snapshot and act on the result.
package routing
