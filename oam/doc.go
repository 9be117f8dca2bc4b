// Package oam is the operator's plane of a daitn node: the local control API
// (JSON over HTTP on 127.0.0.1, guarded by a bearer token kept in the data
// directory), the node-wide event bus streamed as server-sent events, the
// Prometheus /metrics endpoint, and the client the CLI and Go agents use to
// talk to a running node. A running node is driven only through this API.
// The web dashboard that reads it lives in oam/dashboard.
package oam
