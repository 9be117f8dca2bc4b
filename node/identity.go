package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/daitn/daitn/oam"
)

// IdentityFile is the node's private key inside the data directory.
const IdentityFile = "identity.key"

// LoadIdentity reads the Ed25519 key from dataDir.
func LoadIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("identity %s: not a libp2p private key: %w", path, err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("identity %s: key type %v, want Ed25519", path, k.Type())
	}
	return k, nil
}

// LoadOrCreateIdentity returns the key in dataDir, creating one (mode 0600)
// if there is none. An existing key is never overwritten.
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, bool, error) {
	k, err := LoadIdentity(dataDir)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory: %w", err)
	}
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate identity: %w", err)
	}
	b, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("encode identity: %w", err)
	}
	path := filepath.Join(dataDir, IdentityFile)
	// O_EXCL: two concurrent inits must not both write a key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			k, err := LoadIdentity(dataDir)
			return k, false, err
		}
		return nil, false, fmt.Errorf("write identity: %w", err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("write identity: %w", err)
	}
	return priv, true, nil
}

// Init creates dataDir with an identity and a commented config.toml. Running
// it again keeps the existing key and config. It reports what it created.
func Init(dataDir string) (created []string, err error) {
	_, made, err := LoadOrCreateIdentity(dataDir)
	if err != nil {
		return nil, err
	}
	if made {
		created = append(created, filepath.Join(dataDir, IdentityFile))
	}
	cfgPath := filepath.Join(dataDir, ConfigFile)
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		if err := oam.WriteFileAtomic(cfgPath, []byte(ConfigTemplate), 0o600); err != nil {
			return created, fmt.Errorf("write config: %w", err)
		}
		created = append(created, cfgPath)
	} else if err != nil {
		return created, fmt.Errorf("stat config: %w", err)
	}
	return created, nil
}
