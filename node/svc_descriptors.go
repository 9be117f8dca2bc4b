package node

import (
	"context"
	"errors"

	record "github.com/libp2p/go-libp2p-record"
)

// startDescriptors wires the descriptors service into the node. Owned by the
// descriptors service's author; see docs/dev/integration.md.
func (n *Node) startDescriptors(ctx context.Context) error { return nil }

// descriptorRecordValidator validates /daitn/... DHT records.
func descriptorRecordValidator() record.Validator { return rejectAll{} }

type rejectAll struct{}

func (rejectAll) Validate(key string, _ []byte) error {
	return errors.New("no validator for /daitn records yet: " + key)
}
func (rejectAll) Select(string, [][]byte) (int, error) { return 0, nil }
