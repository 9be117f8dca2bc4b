//go:build race

package overlay

// raceBuild slows the many-node tests' beacon rate: under the race detector
// a beacon's two Ed25519 checks cost ~1.5ms instead of ~0.1ms.
const raceBuild = true
