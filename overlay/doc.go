// Package overlay builds the live map every daitn node keeps of the network:
// the draft's G-DRRT (data, resource and reachability topology) and G-QRRT
// (query, resource and reachability topology). Each node gossips a signed
// beacon on daitn/beacons/1 (roles, load, free capacity, reachability, its
// descriptor ids and a bounded list of measured round-trip times), probes the
// peers it talks to over /daitn/probe/1.0.0, and merges what it hears with the
// descriptors fed to it (datasets, models, compute offers, test sets) into a
// graph whose elements all carry an age and expire when no longer refreshed.
// Planners in package routing read an immutable Snapshot of that graph; the
// node's control API and dashboard subscribe to its change events. The
// relationship maps (least-overlap dataset groups) and per-job views (DRRT-A,
// QRRT-A) are computed on a Snapshot, so they need no locks and no network.
package overlay
