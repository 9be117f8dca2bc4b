// Package store opens the node's embedded key-value store: Pebble behind the
// go-datastore interface, with synchronous writes so that whatever a service
// has acknowledged survives a kill -9 of the process.
package store

import (
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// Store is the datastore every service receives. It is a ds.Batching so the
// DHT and the services can share it under their own key prefixes.
type Store interface {
	ds.Batching
}

// Open opens (creating if needed) a Pebble store in dir. Every write is
// fsynced before it returns: services rely on "Put returned" meaning
// "survives a crash".
func Open(dir string) (*pebbleds.Datastore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store directory %s: %w", dir, err)
	}
	d, err := pebbleds.NewDatastore(dir,
		pebbleds.WithPebbleWriteOptions(pebble.Sync),
		pebbleds.WithCacheSize(16<<20),
	)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return d, nil
}
