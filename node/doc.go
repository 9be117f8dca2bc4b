// Package node assembles a daitn peer: its identity from the data directory,
// the libp2p host (TCP and QUIC, Noise and TLS, yamux, connection and
// resource managers, NAT traversal), the Kademlia DHT under the /daitn
// prefix backed by the embedded store, GossipSub with signing and peer
// scoring, peer discovery, the control API, and the services (descriptors,
// overlay, transfer, taskpool, train) started in dependency order and closed
// in reverse. The CLI, tests, examples and Go agents all embed a Node
// through New and Close.
package node
