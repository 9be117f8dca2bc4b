// Package sketch computes MinHash content sketches of datasets: each sample's
// bytes are hashed once with BLAKE3 and K independent 32-bit minima are kept,
// so two peers can estimate the Jaccard overlap of their sample sets from
// 4*K bytes each, without exchanging data. Data descriptors carry the sketch;
// the planners use Jaccard to skip datasets that are redundant with ones
// already chosen.
package sketch
