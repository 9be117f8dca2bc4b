// Package transfer is daitn's data plane for bulk bytes: models travel to
// data, data travels to compute, updates travel back. Files and directories
// are split into content-defined chunks (package chunker), stored on disk as
// verified content-addressed blocks packed into append-only segment files
// with a Pebble index (segstore.go), described by a manifest whose CID is the
// root, and fetched peer to peer over /daitn/transfer/1.0.0 (package wire):
// many blocks pipelined per stream, several holders in parallel, every block
// verified on receipt and before it is served, holders found through DHT
// provider records for roots and by asking connected peers. A fetch that is
// interrupted resumes from the blocks already stored, and a root can be made
// private to an allow-list of peers.
package transfer
