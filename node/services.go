package node

import (
	"context"
	"fmt"
	"time"
)

// startServices starts the services in dependency order. Each start function
// lives in svc_<name>.go and registers its service with addService, so Close
// stops them in reverse order.
func (n *Node) startServices(ctx context.Context) error {
	steps := []struct {
		name  string
		start func(context.Context) error
	}{
		{"descriptors", n.startDescriptors},
		{"overlay", n.startOverlay},
		{"transfer", n.startTransfer},
		{"infer", n.startInfer},
		{"taskpool", n.startTaskpool},
		{"train", n.startTrain},
	}
	for _, s := range steps {
		t0 := time.Now()
		if err := s.start(ctx); err != nil {
			return fmt.Errorf("start %s service: %w", s.name, err)
		}
		n.log.Debug("service started", "service", s.name, "took", time.Since(t0))
	}
	return nil
}
