package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/transfer/chunker"
	"github.com/daitn/daitn/transfer/wire"
)

// Sentinel errors callers act on.
var (
	ErrNotFound    = errors.New("not found")
	ErrNotPinned   = errors.New("not pinned")
	ErrClosed      = errors.New("transfer service closed")
	ErrNoProviders = errors.New("no provider found")
	ErrRefused     = errors.New("refused by access policy")
	ErrTooLarge    = errors.New("too large")
	ErrIsDir       = errors.New("root is a directory")
)

// Config is what Options set. Defaults are listed on New.
type Config struct {
	Logger            *slog.Logger
	Sync              bool
	Provide           bool
	MaxFetchSize      int64
	Window            int
	MaxPeers          int
	NoProviderTimeout time.Duration
	ReprovideInterval time.Duration
	DiskReserve       int64
}

// Option configures New.
type Option func(*Config) error

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) error { c.Logger = l; return nil }
}

// WithSync turns fsync of blocks and pins on or off (default on). Off is
// only for benchmarks and throw-away nodes: a crash may then lose blocks,
// though it can never make a corrupt block visible because every read is
// verified.
func WithSync(on bool) Option { return func(c *Config) error { c.Sync = on; return nil } }

// WithProvide turns announcing roots in the DHT on or off (default on when
// a routing.Routing is given).
func WithProvide(on bool) Option { return func(c *Config) error { c.Provide = on; return nil } }

// WithMaxFetchSize refuses fetches of roots larger than n bytes (default
// 0: no limit other than free disk space).
func WithMaxFetchSize(n int64) Option {
	return func(c *Config) error {
		if n < 0 {
			return fmt.Errorf("max fetch size %d, want >= 0", n)
		}
		c.MaxFetchSize = n
		return nil
	}
}

// WithWindow sets the most bytes that may be requested from one peer and
// not yet received (default 16 MiB, accepted 256 KiB..256 MiB). Each peer
// starts at 2 MiB (or less) and grows towards it as it delivers.
func WithWindow(n int) Option {
	return func(c *Config) error {
		if n < 256<<10 || n > 256<<20 {
			return fmt.Errorf("window %d bytes, want 256 KiB..256 MiB", n)
		}
		c.Window = n
		return nil
	}
}

// WithMaxPeers bounds how many peers one fetch uses at once (default 8,
// accepted 1..64).
func WithMaxPeers(n int) Option {
	return func(c *Config) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("max peers %d, want 1..64", n)
		}
		c.MaxPeers = n
		return nil
	}
}

// WithNoProviderTimeout sets how long a fetch keeps looking while no peer
// serves it before it fails with ErrNoProviders (default 30s).
func WithNoProviderTimeout(d time.Duration) Option {
	return func(c *Config) error {
		if d <= 0 {
			return fmt.Errorf("no-provider timeout %v, want > 0", d)
		}
		c.NoProviderTimeout = d
		return nil
	}
}

// Service stores blocks in a directory and serves and fetches them.
type Service struct {
	h   host.Host
	rt  routing.Routing
	st  *blockStore
	cfg Config
	log *slog.Logger

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool

	// gcMu: adds and fetches hold it shared, GC exclusively, so GC never
	// sweeps blocks whose manifest is not written or pinned yet. GC only
	// ever TryLocks it, so a waiting GC never stalls new adds and fetches.
	gcMu sync.RWMutex

	mu       sync.Mutex
	policies map[cid.Cid]map[peer.ID]bool // private roots
	private  map[cid.Cid][]cid.Cid        // block -> private roots containing it
	streams  map[network.Stream]struct{}
	badPeers map[peer.ID]int
	complete map[cid.Cid]int64 // root -> store removal count when found complete

	provideCh chan cid.Cid

	servedBlocks, servedBytes, refusedReqs atomic.Int64
	fetchedBlocks, fetchedBytes, badBlocks atomic.Int64
}

// New opens (creating if needed) the chunk store in dir and registers the
// /daitn/transfer/1.0.0 handler on h. rt may be nil: holders are then found
// only among connected peers and FetchOptions.Providers.
//
// Defaults: fsync on, provide on when rt != nil, window 16 MiB per peer,
// 8 peers per fetch, no-provider timeout 30s, reprovide every 12h, 64 MiB
// of disk kept free.
func New(ctx context.Context, h host.Host, rt routing.Routing, dir string, opts ...Option) (*Service, error) {
	if h == nil {
		return nil, errors.New("transfer: host is nil")
	}
	cfg := Config{
		Logger: slog.Default(), Sync: true, Provide: rt != nil,
		Window: 16 << 20, MaxPeers: 8, NoProviderTimeout: 30 * time.Second,
		ReprovideInterval: 12 * time.Hour, DiskReserve: 64 << 20,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("transfer: %w", err)
		}
	}
	if cfg.Provide && rt == nil {
		cfg.Provide = false
	}
	st, err := openBlockStore(dir, cfg.Sync, cfg.Logger.With("svc", "transfer"))
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	s := &Service{
		h: h, rt: rt, st: st, cfg: cfg, log: cfg.Logger.With("svc", "transfer"),
		policies: map[cid.Cid]map[peer.ID]bool{}, private: map[cid.Cid][]cid.Cid{},
		streams: map[network.Stream]struct{}{}, badPeers: map[peer.ID]int{}, complete: map[cid.Cid]int64{},
		provideCh: make(chan cid.Cid, 64),
	}
	pols, err := st.loadPolicies()
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("transfer: %w", err)
	}
	for root, allow := range pols {
		s.setPolicyLocked(root, allow)
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	h.SetStreamHandler(wire.Protocol, s.handleStream)
	if cfg.Provide {
		s.wg.Add(1)
		go s.provideLoop()
	}
	return s, nil
}

// Close stops serving, cancels fetches in progress and waits for every
// goroutine of the service. It is idempotent.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.h.RemoveStreamHandler(wire.Protocol)
		s.mu.Lock()
		s.closed.Store(true)
		s.cancel()
		for str := range s.streams {
			_ = str.Reset()
		}
		s.mu.Unlock()
		s.wg.Wait()
		err = s.st.close()
	})
	return err
}

// enter registers a caller-driven operation so Close waits for it.
func (s *Service) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	s.wg.Add(1)
	return nil
}

// Dir is the chunk directory.
func (s *Service) Dir() string { return s.st.dir }

// AddOption changes how something is added.
type AddOption func(*addConfig)

type addConfig struct {
	allow   []peer.ID
	private bool
}

// Private makes the added root private to allow before it is pinned or
// announced, so it never appears in the DHT (same rules as SetPolicy).
func Private(allow ...peer.ID) AddOption {
	return func(c *addConfig) {
		c.private = true
		c.allow = append([]peer.ID{}, allow...)
	}
}

// AddBytes stores b as a file and returns its root CID (pinned).
func (s *Service) AddBytes(ctx context.Context, b []byte, opts ...AddOption) (cid.Cid, error) {
	return s.AddReader(ctx, bytes.NewReader(b), opts...)
}

// AddReader stores everything r yields as one file, streaming (memory is
// bounded by two maximum chunks), pins it and returns its root CID.
func (s *Service) AddReader(ctx context.Context, r io.Reader, opts ...AddOption) (cid.Cid, error) {
	if err := s.enter(); err != nil {
		return cid.Undef, err
	}
	defer s.wg.Done()
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	root, _, err := s.addFile(ctx, r)
	if err != nil {
		return cid.Undef, err
	}
	return root, s.finishAdd(root, opts)
}

// AddFile stores the file or directory at path, pins it and returns its
// root CID. Symlinks and special files inside a directory are skipped.
func (s *Service) AddFile(ctx context.Context, path string, opts ...AddOption) (cid.Cid, error) {
	if err := s.enter(); err != nil {
		return cid.Undef, err
	}
	defer s.wg.Done()
	fi, err := os.Stat(path)
	if err != nil {
		return cid.Undef, fmt.Errorf("add %s: %w", path, err)
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	var root cid.Cid
	if fi.IsDir() {
		root, _, err = s.addDir(ctx, path, 0)
	} else {
		var f *os.File
		if f, err = os.Open(path); err != nil {
			return cid.Undef, fmt.Errorf("add %s: %w", path, err)
		}
		root, _, err = s.addFile(ctx, f)
		f.Close()
	}
	if err != nil {
		return cid.Undef, fmt.Errorf("add %s: %w", path, err)
	}
	return root, s.finishAdd(root, opts)
}

func (s *Service) finishAdd(root cid.Cid, opts []AddOption) error {
	var ac addConfig
	for _, o := range opts {
		if o != nil {
			o(&ac)
		}
	}
	if err := s.st.flush(); err != nil {
		return err
	}
	if ac.private {
		if err := s.st.savePolicy(root, ac.allow); err != nil {
			return err
		}
		s.mu.Lock()
		s.setPolicyLocked(root, ac.allow)
		s.mu.Unlock()
	}
	if err := s.st.pin(root); err != nil {
		return err
	}
	s.refreshPrivate(root)
	s.announce(root)
	return nil
}

func (s *Service) addFile(ctx context.Context, r io.Reader) (cid.Cid, uint64, error) {
	ck, err := chunker.New(r, chunker.DefaultParams)
	if err != nil {
		return cid.Undef, 0, err
	}
	m := &wire.Manifest{Type: wire.TypeFile}
	for {
		if err := ctx.Err(); err != nil {
			return cid.Undef, 0, err
		}
		b, err := ck.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cid.Undef, 0, err
		}
		if len(m.Chunks) >= wire.MaxManifestChunks {
			return cid.Undef, 0, fmt.Errorf("file has more than %d chunks (about %d GiB): %w",
				wire.MaxManifestChunks, wire.MaxManifestChunks/4096, ErrTooLarge)
		}
		c := wire.Sum(wire.CodecRaw, b)
		if err := s.st.put(c, b, false); err != nil {
			return cid.Undef, 0, err
		}
		m.Chunks = append(m.Chunks, wire.Chunk{CID: c, Size: uint32(len(b))})
		m.Size += uint64(len(b))
	}
	return s.putManifest(m)
}

func (s *Service) putManifest(m *wire.Manifest) (cid.Cid, uint64, error) {
	b, err := m.Encode()
	if err != nil {
		return cid.Undef, 0, err
	}
	c := wire.Sum(wire.CodecManifest, b)
	if err := s.st.put(c, b, false); err != nil {
		return cid.Undef, 0, err
	}
	return c, m.Size, nil
}

func (s *Service) addDir(ctx context.Context, path string, depth int) (cid.Cid, uint64, error) {
	if depth >= wire.MaxDepth {
		return cid.Undef, 0, fmt.Errorf("directory %s nested deeper than %d levels: %w", path, wire.MaxDepth, ErrTooLarge)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return cid.Undef, 0, err
	}
	m := &wire.Manifest{Type: wire.TypeDir}
	for _, e := range ents { // ReadDir sorts by name, as the manifest requires
		p := filepath.Join(path, e.Name())
		if err := wire.ValidName(e.Name()); err != nil {
			return cid.Undef, 0, fmt.Errorf("%s: %w", p, err)
		}
		var c cid.Cid
		var size uint64
		var typ wire.Type
		switch {
		case e.IsDir():
			typ = wire.TypeDir
			c, size, err = s.addDir(ctx, p, depth+1)
		case e.Type().IsRegular():
			typ = wire.TypeFile
			var f *os.File
			if f, err = os.Open(p); err == nil {
				c, size, err = s.addFile(ctx, f)
				f.Close()
			}
		default:
			s.log.Warn("skipping non-regular file", "path", p)
			continue
		}
		if err != nil {
			return cid.Undef, 0, fmt.Errorf("%s: %w", p, err)
		}
		if len(m.Entries) >= wire.MaxDirEntries {
			return cid.Undef, 0, fmt.Errorf("directory %s has more than %d entries: %w", path, wire.MaxDirEntries, ErrTooLarge)
		}
		m.Entries = append(m.Entries, wire.Entry{Name: e.Name(), CID: c, Type: typ, Size: size})
		m.Size += size
	}
	return s.putManifest(m)
}

// manifest loads and decodes a stored manifest.
func (s *Service) manifest(c cid.Cid) (*wire.Manifest, error) {
	if c.Type() != wire.CodecManifest {
		return nil, fmt.Errorf("%s is not a manifest CID (codec 0x%x, want 0x%x)", c, c.Type(), wire.CodecManifest)
	}
	b, err := s.st.get(c, nil, wire.MaxBlockSize)
	if err != nil {
		return nil, err
	}
	return wire.DecodeManifest(c, b)
}

// walk visits root and every block below it that is stored; fn gets each
// block with its manifest (nil for data chunks). Missing blocks are passed
// with present=false and not descended into.
func (s *Service) walk(root cid.Cid, fn func(c cid.Cid, present bool)) error {
	var rec func(c cid.Cid, depth int) error
	rec = func(c cid.Cid, depth int) error {
		if depth > wire.MaxDepth {
			return fmt.Errorf("%s: nested deeper than %d", c, wire.MaxDepth)
		}
		if !s.st.has(c) {
			fn(c, false)
			return nil
		}
		fn(c, true)
		m, err := s.manifest(c)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		for _, ch := range m.Chunks {
			fn(ch.CID, s.st.has(ch.CID))
		}
		for _, e := range m.Entries {
			if err := rec(e.CID, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return rec(root, 0)
}

// Has reports whether block c (a chunk or a manifest) is stored.
func (s *Service) Has(c cid.Cid) bool { return s.st.has(c) }

// Complete reports whether root and every block below it are stored.
// Positive answers are cached until a block is removed, so a peer asking
// "have you got it?" again and again costs a map look-up, not a walk.
func (s *Service) Complete(root cid.Cid) (bool, error) {
	gen := s.st.removals.Load()
	s.mu.Lock()
	g, hit := s.complete[root]
	s.mu.Unlock()
	if hit && g == gen {
		return true, nil
	}
	ok := true
	err := s.walk(root, func(_ cid.Cid, present bool) {
		if !present {
			ok = false
		}
	})
	if ok && err == nil {
		s.mu.Lock()
		if len(s.complete) > 4096 {
			clear(s.complete)
		}
		s.complete[root] = gen
		s.mu.Unlock()
	}
	return ok && err == nil, err
}

// Info describes a stored root.
type Info struct {
	Root     CID       `json:"root"`
	Type     string    `json:"type"`
	Size     uint64    `json:"size"`
	Blocks   int       `json:"blocks"`
	Complete bool      `json:"complete"`
	Pinned   bool      `json:"pinned"`
	Private  bool      `json:"private"`
	Allow    []peer.ID `json:"allow,omitempty"`
}

// Stat describes a stored root.
func (s *Service) Stat(root cid.Cid) (Info, error) {
	m, err := s.manifest(root)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", root, err)
	}
	in := Info{Root: CID{root}, Type: m.Type.String(), Size: m.Size, Complete: true}
	if err := s.walk(root, func(_ cid.Cid, present bool) {
		in.Blocks++
		if !present {
			in.Complete = false
		}
	}); err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", root, err)
	}
	pins, _ := s.st.pins()
	for _, p := range pins {
		if p.Equals(root) {
			in.Pinned = true
		}
	}
	s.mu.Lock()
	if allow, ok := s.policies[root]; ok {
		in.Private = true
		for id := range allow {
			in.Allow = append(in.Allow, id)
		}
	}
	s.mu.Unlock()
	return in, nil
}

// Export writes the file at root to w, verifying every chunk as it is read.
func (s *Service) Export(ctx context.Context, root cid.Cid, w io.Writer) error {
	m, err := s.manifest(root)
	if err != nil {
		return fmt.Errorf("export %s: %w", root, err)
	}
	if m.Type != wire.TypeFile {
		return fmt.Errorf("export %s to a stream: %w; export it to a path", root, ErrIsDir)
	}
	return s.exportFile(ctx, m, w)
}

func (s *Service) exportFile(ctx context.Context, m *wire.Manifest, w io.Writer) error {
	buf := getBuf()
	defer putBuf(buf)
	for i, ch := range m.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := s.st.get(ch.CID, (*buf)[:0], wire.MaxChunkSize)
		if err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// ExportPath writes root to path: a file, or a directory tree. A file is
// written to a temporary name and renamed, so path never holds half a file.
func (s *Service) ExportPath(ctx context.Context, root cid.Cid, path string) error {
	if err := s.exportPath(ctx, root, path, 0); err != nil {
		return fmt.Errorf("export %s to %s: %w", root, path, err)
	}
	return nil
}

func (s *Service) exportPath(ctx context.Context, c cid.Cid, path string, depth int) error {
	if depth > wire.MaxDepth {
		return fmt.Errorf("nested deeper than %d", wire.MaxDepth)
	}
	m, err := s.manifest(c)
	if err != nil {
		return err
	}
	if m.Type == wire.TypeDir {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		for _, e := range m.Entries {
			// Names were validated when the manifest was decoded: no
			// separators, no "..", so this stays inside path.
			if err := s.exportPath(ctx, e.CID, filepath.Join(path, e.Name), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := s.exportFile(ctx, m, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Pin keeps root and everything below it through GC. root's manifest must
// be stored.
func (s *Service) Pin(ctx context.Context, root cid.Cid) error {
	if _, err := s.manifest(root); err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	return s.st.pin(root)
}

// Unpin lets GC reclaim root's blocks (those no other pin references).
func (s *Service) Unpin(ctx context.Context, root cid.Cid) error {
	ok, err := s.st.unpin(root)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("unpin %s: %w", root, ErrNotPinned)
	}
	return nil
}

// Pins lists pinned roots.
func (s *Service) Pins() ([]cid.Cid, error) { return s.st.pins() }

// GCResult says what GC removed.
type GCResult struct {
	Removed    int   `json:"removed"`
	FreedBytes int64 `json:"freed_bytes"` // data bytes of the removed blocks
	Kept       int   `json:"kept"`
	// ReclaimedBytes is the disk space returned: segment files that were
	// mostly garbage, their live blocks moved elsewhere.
	ReclaimedBytes int64 `json:"reclaimed_bytes"`
}

// GC removes every block not reachable from a pinned root. It runs when no
// add or fetch is in progress, waiting (until ctx ends) for a moment when
// none is, without holding new ones up.
func (s *Service) GC(ctx context.Context) (GCResult, error) {
	if err := s.enter(); err != nil {
		return GCResult{}, err
	}
	defer s.wg.Done()
	for !s.gcMu.TryLock() {
		select {
		case <-ctx.Done():
			return GCResult{}, fmt.Errorf("gc: adds or fetches still in progress: %w", ctx.Err())
		case <-s.ctx.Done():
			return GCResult{}, ErrClosed
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer s.gcMu.Unlock()
	pins, err := s.st.pins()
	if err != nil {
		return GCResult{}, err
	}
	live := map[cid.Cid]bool{}
	for _, p := range pins {
		if err := s.walk(p, func(c cid.Cid, present bool) { live[c] = true }); err != nil {
			return GCResult{}, fmt.Errorf("gc: walk pin %s: %w", p, err)
		}
	}
	var res GCResult
	err = s.st.each(func(c cid.Cid, size int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if live[c] {
			res.Kept++
			return nil
		}
		if err := s.st.remove(c); err != nil {
			return err
		}
		res.Removed++
		res.FreedBytes += size
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if res.ReclaimedBytes, err = s.st.compact(); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	return res, nil
}

// SetPolicy makes root private to the peers in allow (an empty, non-nil
// list means nobody but this node); nil makes it public again. Blocks of a
// private root are served only to allowed peers, others get a refusal, and a
// private root is not announced in the DHT.
func (s *Service) SetPolicy(root cid.Cid, allow []peer.ID) error {
	if err := wire.CheckCID(root); err != nil {
		return fmt.Errorf("set policy: %w", err)
	}
	if err := s.st.savePolicy(root, allow); err != nil {
		return err
	}
	s.mu.Lock()
	s.setPolicyLocked(root, allow)
	s.mu.Unlock()
	s.refreshPrivate(root)
	if allow == nil {
		s.announce(root)
	}
	return nil
}

func (s *Service) setPolicyLocked(root cid.Cid, allow []peer.ID) {
	if allow == nil {
		delete(s.policies, root)
		return
	}
	set := map[peer.ID]bool{}
	for _, id := range allow {
		set[id] = true
	}
	s.policies[root] = set
}

// refreshPrivate recomputes which blocks belong to private roots. It is
// called when a policy changes and when a root's blocks arrive.
func (s *Service) refreshPrivate(changed cid.Cid) {
	s.mu.Lock()
	roots := make([]cid.Cid, 0, len(s.policies))
	for r := range s.policies {
		roots = append(roots, r)
	}
	s.mu.Unlock()
	priv := map[cid.Cid][]cid.Cid{}
	for _, r := range roots {
		_ = s.walk(r, func(c cid.Cid, _ bool) { priv[c] = append(priv[c], r) })
	}
	s.mu.Lock()
	s.private = priv
	s.mu.Unlock()
}

// allowed decides whether p may have block c requested under root.
func (s *Service) allowed(p peer.ID, root, c cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if allow, ok := s.policies[root]; ok && !allow[p] {
		return false
	}
	roots, ok := s.private[c]
	if !ok {
		return true
	}
	for _, r := range roots {
		if s.policies[r][p] {
			return true
		}
	}
	return false
}

func (s *Service) isPrivate(root cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.policies[root]
	return ok
}

// announce queues root for a DHT provider record unless it is private.
func (s *Service) announce(root cid.Cid) {
	if !s.cfg.Provide || s.isPrivate(root) {
		return
	}
	select {
	case s.provideCh <- root:
	default:
		s.log.Debug("provide queue full; root will be announced at the next reprovide", "root", root)
	}
}

func (s *Service) provideLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReprovideInterval)
	defer t.Stop()
	provide := func(c cid.Cid) {
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		if err := s.rt.Provide(ctx, c, true); err != nil && s.ctx.Err() == nil {
			s.log.Debug("provide failed", "root", c, "err", err)
		}
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case c := <-s.provideCh:
			provide(c)
		case <-t.C:
			pins, _ := s.st.pins()
			for _, c := range pins {
				if s.ctx.Err() != nil {
					return
				}
				if !s.isPrivate(c) {
					provide(c)
				}
			}
		}
	}
}

// Stats are the service's counters since start.
type Stats struct {
	Blocks        int            `json:"blocks"`
	Bytes         int64          `json:"bytes"`
	DiskBytes     int64          `json:"disk_bytes"` // segment files, garbage included (gc returns it)
	Pins          int            `json:"pins"`
	ServedBlocks  int64          `json:"served_blocks"`
	ServedBytes   int64          `json:"served_bytes"`
	Refused       int64          `json:"refused"`
	FetchedBlocks int64          `json:"fetched_blocks"`
	FetchedBytes  int64          `json:"fetched_bytes"`
	BadBlocks     int64          `json:"bad_blocks"`
	BadPeers      map[string]int `json:"bad_peers,omitempty"`
}

// Counters returns the traffic counters without walking the store (cheap
// enough for a metrics scrape). Blocks, Bytes, DiskBytes and Pins are left zero.
func (s *Service) Counters() Stats {
	return Stats{
		ServedBlocks: s.servedBlocks.Load(), ServedBytes: s.servedBytes.Load(), Refused: s.refusedReqs.Load(),
		FetchedBlocks: s.fetchedBlocks.Load(), FetchedBytes: s.fetchedBytes.Load(), BadBlocks: s.badBlocks.Load(),
	}
}

// Stats walks the store and returns counters.
func (s *Service) Stats() (Stats, error) {
	st := Stats{
		ServedBlocks: s.servedBlocks.Load(), ServedBytes: s.servedBytes.Load(), Refused: s.refusedReqs.Load(),
		FetchedBlocks: s.fetchedBlocks.Load(), FetchedBytes: s.fetchedBytes.Load(), BadBlocks: s.badBlocks.Load(),
	}
	if err := s.st.each(func(_ cid.Cid, size int64) error { st.Blocks++; st.Bytes += size; return nil }); err != nil {
		return st, err
	}
	st.DiskBytes = s.st.diskBytes()
	pins, err := s.st.pins()
	st.Pins = len(pins)
	s.mu.Lock()
	if len(s.badPeers) > 0 {
		st.BadPeers = map[string]int{}
		for p, n := range s.badPeers {
			st.BadPeers[p.String()] = n
		}
	}
	s.mu.Unlock()
	return st, err
}

// penalise records that p sent a bad block and lowers its connection
// manager tag so it is among the first pruned.
func (s *Service) penalise(p peer.ID, why string) {
	s.badBlocks.Add(1)
	s.mu.Lock()
	s.badPeers[p]++
	s.mu.Unlock()
	s.h.ConnManager().UpsertTag(p, "daitn-transfer-bad", func(v int) int { return v - 10 })
	s.log.Warn("peer misbehaved; excluded from this fetch and penalised", "peer", p, "why", why)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, wire.MaxChunkSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) == wire.MaxChunkSize {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}
