// Package learn is daitn's model math: the networks that travel through a
// federation, local minibatch SGD, weighted federated averaging, evaluation
// and the byte layout weights travel in. It does no I/O at all — no files,
// no network, no clocks — it takes values and returns numbers, so the train
// service, the MPVU and the benchmarks drive it and it is tested without a
// network. Everything is deterministic for a seed.
package learn
