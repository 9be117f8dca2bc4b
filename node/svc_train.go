package node

import "context"

// startTrain wires the train service into the node. Owned by the train service's
// author; see docs/dev/integration.md.
func (n *Node) startTrain(ctx context.Context) error { return nil }
