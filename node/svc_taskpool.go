package node

import "context"

// startTaskpool wires the taskpool service into the node. Owned by the taskpool service's
// author; see docs/dev/integration.md.
func (n *Node) startTaskpool(ctx context.Context) error { return nil }
