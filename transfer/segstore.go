package transfer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"

	"github.com/daitn/daitn/transfer/wire"
)

// Blocks are packed into append-only segment files (dir/segments/NNNNNNNN.seg)
// and found through an index (dir/index, Pebble) mapping CID -> segment,
// offset, length. One file per block cost this project's VM more CPU in
// file creation than the network and hashing together; appending to a big
// file costs about what a plain copy does.
//
// Crash safety: a block is written to its segment first and indexed only
// after the segment has been fsynced, in one synced Pebble batch per flush.
// So the index never points at bytes that a crash could lose; bytes written
// but not yet indexed are garbage that compaction reclaims. Every read is
// still verified against the CID (disks rot, people copy directories).
//
// A record is: magic "dblk" | cid length u16 | data length u32 |
// CRC-32C of the preceding fields and the CID u32 | CID | data. The header
// lets a read check that the index and the segment agree before hashing,
// and lets a segment be read back without its index.
const (
	recMagic      = "dblk"
	recFixed      = 4 + 2 + 4 + 4
	segMaxBytes   = 256 << 20
	idxPrefix     = 'b'
	idxValueLen   = 4 + 8 + 4
	autoFlushSize = 128 << 20 // unindexed bytes that trigger a background flush
	autoFlushAge  = time.Second
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// loc is where a block's data lives.
type loc struct {
	seg uint32
	off int64  // of the record header
	n   uint32 // data bytes
}

func (l loc) dataOff(c cid.Cid) int64 { return l.off + recFixed + int64(c.ByteLen()) }
func (l loc) recLen(c cid.Cid) int64  { return recFixed + int64(c.ByteLen()) + int64(l.n) }

func encodeLoc(l loc) []byte {
	b := make([]byte, idxValueLen)
	binary.BigEndian.PutUint32(b, l.seg)
	binary.BigEndian.PutUint64(b[4:], uint64(l.off))
	binary.BigEndian.PutUint32(b[12:], l.n)
	return b
}

func decodeLoc(b []byte) (loc, error) {
	if len(b) != idxValueLen {
		return loc{}, fmt.Errorf("index value is %d bytes, want %d", len(b), idxValueLen)
	}
	off := binary.BigEndian.Uint64(b[4:])
	if off > 1<<62 {
		return loc{}, fmt.Errorf("index offset %d out of range", off)
	}
	return loc{seg: binary.BigEndian.Uint32(b), off: int64(off), n: binary.BigEndian.Uint32(b[12:])}, nil
}

func idxKey(c cid.Cid) []byte { return append([]byte{idxPrefix}, c.Bytes()...) }

// recordHeader encodes the header of c's record holding n data bytes.
func recordHeader(c cid.Cid, n int) []byte {
	cb := c.Bytes()
	h := make([]byte, recFixed+len(cb))
	copy(h, recMagic)
	binary.BigEndian.PutUint16(h[4:], uint16(len(cb)))
	binary.BigEndian.PutUint32(h[6:], uint32(n))
	copy(h[recFixed:], cb)
	crc := crc32.Update(crc32.Checksum(h[:10], crcTable), crcTable, cb)
	binary.BigEndian.PutUint32(h[10:], crc)
	return h
}

// checkHeader reports whether h is the header recordHeader(c, n) wrote.
func checkHeader(h []byte, c cid.Cid, n uint32) error {
	cb := c.Bytes()
	if len(h) != recFixed+len(cb) || string(h[:4]) != recMagic {
		return errors.New("no record header at the indexed offset")
	}
	if int(binary.BigEndian.Uint16(h[4:])) != len(cb) || !bytes.Equal(h[recFixed:], cb) {
		return errors.New("the record at the indexed offset is of another block")
	}
	if binary.BigEndian.Uint32(h[6:]) != n {
		return fmt.Errorf("record holds %d bytes, the index says %d", binary.BigEndian.Uint32(h[6:]), n)
	}
	crc := crc32.Update(crc32.Checksum(h[:10], crcTable), crcTable, cb)
	if binary.BigEndian.Uint32(h[10:]) != crc {
		return errors.New("record header checksum mismatch")
	}
	return nil
}

// segment is one open segment file.
type segment struct {
	id   uint32
	f    *os.File
	size int64 // bytes reserved so far (only grows for the active segment)
}

// blockStore is the chunk store: segments + index, pins and policies.
type blockStore struct {
	dir    string
	sync   bool
	db     *pebble.DB
	log    *slog.Logger
	segMax int64 // rotate the active segment past this size

	// segMu guards segs: readers hold it shared while they read a segment
	// file, so compaction never closes a file under a read.
	segMu sync.RWMutex
	segs  map[uint32]*segment

	// flushMu orders flushes and removals, so a removal can never be
	// undone by a flush that snapshotted the block just before.
	flushMu sync.Mutex

	mu           sync.Mutex
	active       *segment
	nextSeg      uint32
	pending      map[cid.Cid]loc // written, not yet indexed durably
	writing      map[cid.Cid]bool
	pendingBytes int64
	dirtySegs    map[uint32]*os.File
	dirtyDir     bool // a segment file was created since the last flush
	pendingSince time.Time

	// removals counts deleted blocks, so answers cached about
	// completeness know when they may have gone stale.
	removals atomic.Int64

	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
}

func openBlockStore(dir string, doSync bool, log *slog.Logger) (*blockStore, error) {
	if dir == "" {
		return nil, errors.New("chunk directory is empty")
	}
	if log == nil {
		log = slog.Default()
	}
	for _, d := range []string{"segments", "tmp", "pins", "policy"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", filepath.Join(dir, d), err)
		}
	}
	// Leftovers of writes interrupted by a crash are garbage by design.
	tmp := filepath.Join(dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tmp, err)
	}
	for _, e := range ents {
		_ = os.Remove(filepath.Join(tmp, e.Name()))
	}
	cache := pebble.NewCache(4 << 20)
	defer cache.Unref()
	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{
		Cache:        cache,
		MemTableSize: 4 << 20,
		Logger:       pebbleLogger{log},
	})
	if err != nil {
		return nil, fmt.Errorf("open chunk index %s: %w", filepath.Join(dir, "index"), err)
	}
	s := &blockStore{
		dir: dir, sync: doSync, db: db, log: log, segMax: segMaxBytes,
		segs: map[uint32]*segment{}, pending: map[cid.Cid]loc{}, writing: map[cid.Cid]bool{},
		dirtySegs: map[uint32]*os.File{},
		kick:      make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := s.openSegments(); err != nil {
		_ = s.closeFiles()
		return nil, err
	}
	if err := s.migrateFileBlocks(); err != nil {
		_ = s.closeFiles()
		return nil, err
	}
	go s.flushLoop()
	return s, nil
}

func segName(id uint32) string { return fmt.Sprintf("%08d.seg", id) }

func (s *blockStore) segDir() string { return filepath.Join(s.dir, "segments") }

// openSegments opens every existing segment for reading; new blocks go to
// a fresh segment, so nothing is ever appended after a crash's torn tail.
func (s *blockStore) openSegments() error {
	ents, err := os.ReadDir(s.segDir())
	if err != nil {
		return fmt.Errorf("list segments: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 32)
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join(s.segDir(), name))
		if err != nil {
			return fmt.Errorf("open segment %s: %w", name, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("stat segment %s: %w", name, err)
		}
		s.segs[uint32(id)] = &segment{id: uint32(id), f: f, size: fi.Size()}
		if uint32(id) >= s.nextSeg {
			s.nextSeg = uint32(id) + 1
		}
	}
	if s.nextSeg == 0 {
		s.nextSeg = 1
	}
	return nil
}

// migrateFileBlocks moves blocks from the one-file-per-block layout of
// earlier versions (dir/blocks/xx/<cid>) into segments, then removes them.
func (s *blockStore) migrateFileBlocks() error {
	old := filepath.Join(s.dir, "blocks")
	if _, err := os.Stat(old); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	n := 0
	err := filepath.WalkDir(old, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		c, perr := cid.Decode(d.Name())
		if perr != nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("migrate block %s: %w", c, err)
		}
		if err := wire.Verify(c, b); err != nil {
			s.log.Warn("dropping corrupt block while migrating the chunk store", "cid", c, "err", err)
			return nil
		}
		n++
		return s.put(c, b, false)
	})
	if err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("moved blocks into segment files", "blocks", n, "dir", s.dir)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove migrated blocks: %w", err)
	}
	return nil
}

// lookup finds c: first among written-but-unindexed blocks, then in the
// index.
func (s *blockStore) lookup(c cid.Cid) (loc, bool, error) {
	s.mu.Lock()
	l, ok := s.pending[c]
	s.mu.Unlock()
	if ok {
		return l, true, nil
	}
	v, closer, err := s.db.Get(idxKey(c))
	if errors.Is(err, pebble.ErrNotFound) {
		return loc{}, false, nil
	}
	if err != nil {
		return loc{}, false, fmt.Errorf("chunk index: %w", err)
	}
	l, err = decodeLoc(v)
	closer.Close()
	if err != nil {
		return loc{}, false, fmt.Errorf("chunk index entry of %s: %w", c, err)
	}
	return l, true, nil
}

func (s *blockStore) has(c cid.Cid) bool {
	_, ok, _ := s.lookup(c)
	return ok
}

// size returns the stored size of c, or -1.
func (s *blockStore) size(c cid.Cid) int64 {
	l, ok, _ := s.lookup(c)
	if !ok {
		return -1
	}
	return int64(l.n)
}

// reserve returns the segment and offset where a record of n bytes goes.
func (s *blockStore) reserve(n int64) (*segment, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil || s.active.size+n > s.segMax && s.active.size > 0 {
		id := s.nextSeg
		f, err := os.OpenFile(filepath.Join(s.segDir(), segName(id)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, 0, fmt.Errorf("create segment: %w", err)
		}
		s.nextSeg++
		seg := &segment{id: id, f: f}
		s.segMu.Lock()
		s.segs[id] = seg
		s.segMu.Unlock()
		s.active = seg
		s.dirtyDir = true
	}
	off := s.active.size
	s.active.size += n
	return s.active, off, nil
}

// put stores data as block c; verify is false only for bytes whose CID this
// process just computed or checked. The block is readable at once and
// durable after the next flush.
func (s *blockStore) put(c cid.Cid, data []byte, verify bool) error {
	if verify {
		if err := wire.Verify(c, data); err != nil {
			return err
		}
	}
	if s.closed.Load() {
		return ErrClosed
	}
	if len(data) > wire.MaxBlockSize {
		return fmt.Errorf("block %s is %d bytes, limit %d: %w", c, len(data), wire.MaxBlockSize, ErrTooLarge)
	}
	if s.has(c) {
		return nil
	}
	s.mu.Lock()
	if _, done := s.pending[c]; done || s.writing[c] {
		s.mu.Unlock()
		return nil // another goroutine stored or is storing the same bytes
	}
	s.writing[c] = true
	s.mu.Unlock()
	err := s.write(c, data)
	s.mu.Lock()
	delete(s.writing, c)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store block %s: %w", c, err)
	}
	return nil
}

// write appends c's record and makes it visible (not yet durable).
func (s *blockStore) write(c cid.Cid, data []byte) error {
	h := recordHeader(c, len(data))
	seg, off, err := s.reserve(int64(len(h) + len(data)))
	if err != nil {
		return err
	}
	if _, err := seg.f.WriteAt(h, off); err != nil {
		return err
	}
	if _, err := seg.f.WriteAt(data, off+int64(len(h))); err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.pendingSince = time.Now()
	}
	s.pending[c] = loc{seg: seg.id, off: off, n: uint32(len(data))}
	s.pendingBytes += int64(len(h) + len(data))
	s.dirtySegs[seg.id] = seg.f
	kick := s.pendingBytes >= autoFlushSize
	s.mu.Unlock()
	if kick {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// flushLoop makes written blocks durable in the background, so a fetch
// interrupted by a crash keeps most of what it received.
func (s *blockStore) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(autoFlushAge)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
			s.mu.Lock()
			old := len(s.pending) > 0 && time.Since(s.pendingSince) >= autoFlushAge
			s.mu.Unlock()
			if !old {
				continue
			}
		}
		if err := s.flush(); err != nil {
			s.log.Warn("background flush of the chunk store failed", "err", err)
		}
	}
}

// flush makes every block written so far durable: segments are fsynced
// first, then their index entries are committed in one synced batch.
func (s *blockStore) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if len(s.pending) == 0 && len(s.dirtySegs) == 0 {
		s.mu.Unlock()
		return nil
	}
	snap := make(map[cid.Cid]loc, len(s.pending))
	for c, l := range s.pending {
		snap[c] = l
	}
	files := s.dirtySegs
	s.dirtySegs = map[uint32]*os.File{}
	dirtyDir := s.dirtyDir
	s.dirtyDir = false
	s.mu.Unlock()

	restore := func() {
		s.mu.Lock()
		for id, f := range files {
			s.dirtySegs[id] = f
		}
		s.dirtyDir = s.dirtyDir || dirtyDir
		s.mu.Unlock()
	}
	if s.sync {
		errs := make(chan error, len(files)+1)
		for _, f := range files {
			go func() { errs <- f.Sync() }()
		}
		if dirtyDir {
			go func() { errs <- syncDir(s.segDir()) }()
		} else {
			errs <- nil
		}
		var first error
		for range len(files) + 1 {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			restore()
			return fmt.Errorf("sync segments: %w", first)
		}
	}
	b := s.db.NewBatch()
	for c, l := range snap {
		if err := b.Set(idxKey(c), encodeLoc(l), nil); err != nil {
			b.Close()
			restore()
			return fmt.Errorf("index blocks: %w", err)
		}
	}
	wo := pebble.NoSync
	if s.sync {
		wo = pebble.Sync
	}
	if err := b.Commit(wo); err != nil {
		b.Close()
		restore()
		return fmt.Errorf("index blocks: %w", err)
	}
	b.Close()
	s.mu.Lock()
	for c, l := range snap {
		if s.pending[c] == l {
			delete(s.pending, c)
			s.pendingBytes -= l.recLen(c)
		}
	}
	if len(s.pending) == 0 {
		s.pendingBytes = 0
	} else {
		s.pendingSince = time.Now()
	}
	s.mu.Unlock()
	return nil
}

// ErrCorrupt reports a stored block that no longer matches its CID; the
// block has been removed so it can be fetched again.
var ErrCorrupt = errors.New("stored block is corrupt")

// get reads and verifies block c into buf (grown if needed). A block larger
// than limit is refused without reading it.
func (s *blockStore) get(c cid.Cid, buf []byte, limit int) ([]byte, error) {
	out, bad, err := s.read(c, buf, limit)
	if bad != nil {
		_ = s.remove(c)
		return nil, fmt.Errorf("block %s: %w: %v", c, ErrCorrupt, bad)
	}
	return out, err
}

// read is get without the removal: bad is why the stored copy is unusable.
func (s *blockStore) read(c cid.Cid, buf []byte, limit int) (out []byte, bad, err error) {
	for attempt := 0; ; attempt++ {
		l, ok, err := s.lookup(c)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, fmt.Errorf("block %s: %w", c, ErrNotFound)
		}
		if int64(l.n) > int64(limit) {
			return nil, fmt.Errorf("%d bytes, limit %d", l.n, limit), nil
		}
		s.segMu.RLock()
		seg := s.segs[l.seg]
		if seg == nil {
			s.segMu.RUnlock()
			if attempt == 0 {
				continue // compaction moved it between the look-up and now
			}
			return nil, fmt.Errorf("segment %d is missing", l.seg), nil
		}
		out, bad, err = readRecord(seg.f, c, l, buf)
		s.segMu.RUnlock()
		return out, bad, err
	}
}

func readRecord(f *os.File, c cid.Cid, l loc, buf []byte) (out []byte, bad, err error) {
	var hb [recFixed + 64]byte
	h := hb[:0]
	if c.ByteLen() <= 64 {
		h = hb[:recFixed+c.ByteLen()]
	} else {
		h = make([]byte, recFixed+c.ByteLen())
	}
	if _, err := f.ReadAt(h, l.off); err != nil {
		return nil, fmt.Errorf("read record header: %v", err), nil
	}
	if err := checkHeader(h, c, l.n); err != nil {
		return nil, err, nil
	}
	if cap(buf) < int(l.n) {
		buf = make([]byte, l.n)
	}
	buf = buf[:l.n]
	if _, err := f.ReadAt(buf, l.dataOff(c)); err != nil {
		return nil, fmt.Errorf("read record data: %v", err), nil
	}
	if err := wire.Verify(c, buf); err != nil {
		return nil, err, nil
	}
	return buf, nil, nil
}

func (s *blockStore) remove(c cid.Cid) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.removals.Add(1)
	s.mu.Lock()
	if l, ok := s.pending[c]; ok {
		delete(s.pending, c)
		s.pendingBytes -= l.recLen(c)
	}
	s.mu.Unlock()
	// Not synced: a removal lost in a crash brings back an entry that
	// still points at intact bytes (segments are only deleted after a
	// synced commit), which GC removes again.
	if err := s.db.Delete(idxKey(c), pebble.NoSync); err != nil {
		return fmt.Errorf("remove block %s: %w", c, err)
	}
	return nil
}

// each calls fn for every stored block; fn may remove blocks.
func (s *blockStore) each(fn func(c cid.Cid, size int64) error) error {
	return s.eachLoc(func(c cid.Cid, l loc) error { return fn(c, int64(l.n)) })
}

func (s *blockStore) eachLoc(fn func(c cid.Cid, l loc) error) error {
	s.mu.Lock()
	pend := make(map[cid.Cid]loc, len(s.pending))
	for c, l := range s.pending {
		pend[c] = l
	}
	s.mu.Unlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{idxPrefix}, UpperBound: []byte{idxPrefix + 1}})
	if err != nil {
		return fmt.Errorf("chunk index: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		_, c, err := cid.CidFromBytes(it.Key()[1:])
		if err != nil {
			continue // not ours
		}
		if _, dup := pend[c]; dup {
			continue
		}
		l, err := decodeLoc(it.Value())
		if err != nil {
			continue
		}
		if err := fn(c, l); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("chunk index: %w", err)
	}
	for c, l := range pend {
		if err := fn(c, l); err != nil {
			return err
		}
	}
	return nil
}

// compact rewrites the live blocks of segments that are mostly garbage
// (removed blocks, or records a crash left unindexed) into the active
// segment and deletes them. It runs after GC, when no add or fetch is in
// progress; serving goes on.
func (s *blockStore) compact() (freed int64, err error) {
	if err := s.flush(); err != nil {
		return 0, err
	}
	live := map[uint32]int64{}
	if err := s.eachLoc(func(c cid.Cid, l loc) error {
		live[l.seg] += l.recLen(c)
		return nil
	}); err != nil {
		return 0, err
	}
	s.mu.Lock()
	var activeID uint32
	if s.active != nil {
		activeID = s.active.id
	}
	s.mu.Unlock()
	s.segMu.RLock()
	victims := map[uint32]int64{}
	for id, seg := range s.segs {
		if id == activeID {
			continue
		}
		if live[id]*2 <= seg.size {
			victims[id] = seg.size
		}
	}
	s.segMu.RUnlock()
	if len(victims) == 0 {
		return 0, nil
	}
	var moves []cid.Cid
	if err := s.eachLoc(func(c cid.Cid, l loc) error {
		if _, ok := victims[l.seg]; ok {
			moves = append(moves, c)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, c := range moves {
		b, err := s.get(c, nil, wire.MaxBlockSize)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				continue // removed by get; fetched again when wanted
			}
			return freed, fmt.Errorf("compact: %w", err)
		}
		if err := s.write(c, b); err != nil {
			return freed, fmt.Errorf("compact: %w", err)
		}
	}
	// The new copies must be durable and indexed before the old ones go.
	if err := s.flush(); err != nil {
		return freed, fmt.Errorf("compact: %w", err)
	}
	ids := make([]uint32, 0, len(victims))
	for id := range victims {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s.segMu.Lock()
	for _, id := range ids {
		seg := s.segs[id]
		delete(s.segs, id)
		_ = seg.f.Close()
		if err := os.Remove(filepath.Join(s.segDir(), segName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.segMu.Unlock()
			return freed, fmt.Errorf("compact: remove segment %d: %w", id, err)
		}
		freed += victims[id]
	}
	s.segMu.Unlock()
	s.mu.Lock()
	for _, id := range ids {
		delete(s.dirtySegs, id)
	}
	s.mu.Unlock()
	if s.sync {
		if err := syncDir(s.segDir()); err != nil {
			return freed, fmt.Errorf("compact: %w", err)
		}
	}
	return freed, nil
}

// diskBytes is the size of all segment files.
func (s *blockStore) diskBytes() int64 {
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	var n int64
	for _, seg := range s.segs {
		n += seg.size
	}
	return n
}

// close makes everything written durable and releases the files. The
// store must not be used afterwards.
func (s *blockStore) close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	<-s.done
	err := s.flush()
	if cerr := s.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (s *blockStore) closeFiles() error {
	s.segMu.Lock()
	for _, seg := range s.segs {
		_ = seg.f.Close()
	}
	s.segs = map[uint32]*segment{}
	s.segMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close chunk index: %w", err)
	}
	return nil
}

// pebbleLogger sends Pebble's messages to the service log.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("chunk index: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Warn("chunk index: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("chunk index: " + fmt.Sprintf(format, args...))
	pebble.DefaultLogger.Fatalf(format, args...)
}
