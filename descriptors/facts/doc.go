// Package facts computes a dataset's facts from the data itself rather than
// from its owner's word: sample count, size in bytes, label distribution, a
// MinHash content sketch over the samples' bytes and the last-updated time.
// It understands ImageFolder directories (one subfolder per label), CSV and
// JSONL files with a label column, and MNIST idx files. The descriptor
// service uses it for `daitn data add` and to notice when data changes.
package facts
