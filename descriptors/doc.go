// Package descriptors is daitn's control plane for "what exists": data
// owners, model owners, compute providers and testers (MPVUs) describe what
// they offer as signed descriptors (deterministic CBOR inside a libp2p
// record.Envelope, one payload type and signature domain per kind), and
// anyone finds them through the Kademlia DHT (records under /daitn/d/<slot>
// with a newest-wins validator, capability keys announced with Provide) and
// the GossipSub topic daitn/descriptors/1. The overlay builds its network map
// from these descriptors; the node wires the Service into its API and CLI.
package descriptors
