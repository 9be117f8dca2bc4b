// Package infer answers inference queries over /daitn/infer/1.0.0 and asks
// them. A model host serves the models it has published itself: its own
// model descriptors whose weights (the descriptor's WeightsRoot) are stored
// in its local transfer store and whose architecture package learn can load.
// Weights are loaded on first use and kept in a small cache. A client takes
// a snapshot of the live map, lets Q-FAM say whether any reachable model can
// meet the request (its reasons become the error when none can), lets
// Q-IRCE rank the hosts, asks the best and fails over to the next when one is
// unreachable, busy, cannot serve the model or times out.
//
// One query is one stream: a length-prefixed CBOR Request, a length-prefixed
// CBOR Response. Every frame has a hard size limit, the host reserves the
// request's memory in the stream's resource scope before reading it, and a
// bounded number of queries run at once; beyond that the host answers
// StatusBusy at once instead of letting queries pile up, so the client can go
// elsewhere. In-flight and queued counts feed the node's beacon load, which
// is what Q-IRCE weighs on other peers.
package infer
