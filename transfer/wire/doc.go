// Package wire defines everything of transfer that crosses the network or
// the disk between peers: block CIDs (BLAKE3 or SHA2-256 multihash, raw codec
// for data chunks and cbor codec for manifests), the manifest format, and the
// framed request/response messages of the /daitn/transfer/1.0.0 protocol.
// Every decoder here has a size limit, rejects what it does not understand
// with an error naming the field, and has a fuzz target.
package wire
