package node

import (
	record "github.com/libp2p/go-libp2p-record"
)

// defaultValidators are the DHT record validators every node installs. The
// descriptors service owns the "daitn" namespace (keys /daitn/d/...); until a
// validator is registered there, the namespace accepts nothing, which is the
// safe default for records from strangers.
func defaultValidators() map[string]record.Validator {
	return map[string]record.Validator{
		"daitn": descriptorRecordValidator(),
	}
}
