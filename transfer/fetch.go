package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/transfer/wire"
)

// FetchOptions tune one Fetch.
type FetchOptions struct {
	// Progress, if set, is called about every ProgressInterval and once at
	// the end, from the fetch's own goroutine; it must not block for long.
	Progress         func(Progress)
	ProgressInterval time.Duration // default 250ms
	// Providers are asked first (e.g. the peer that just told us the CID).
	Providers []peer.ID
	// NoPin leaves the fetched root unpinned, so the next GC may remove it.
	NoPin bool

	onlyProviders bool
}

// Progress is a snapshot of a fetch. Byte counts are of unique blocks.
type Progress struct {
	Root         CID           `json:"root"`
	TotalBytes   int64         `json:"total_bytes"` // -1 until the root manifest is known
	DoneBytes    int64         `json:"done_bytes"`  // stored, including blocks we already had
	FetchedBytes int64         `json:"fetched_bytes"`
	TotalBlocks  int           `json:"total_blocks"`
	DoneBlocks   int           `json:"done_blocks"`
	Peers        int           `json:"peers"` // peers serving right now
	Elapsed      time.Duration `json:"elapsed"`
	Done         bool          `json:"done"`
}

// PeerStats is what one peer did for a fetch.
type PeerStats struct {
	Blocks int    `json:"blocks"`
	Bytes  int64  `json:"bytes"`
	Bad    int    `json:"bad"`
	Err    string `json:"err,omitempty"`
}

// FetchResult summarises a finished fetch.
type FetchResult struct {
	Root         CID                   `json:"root"`
	Size         uint64                `json:"size"`   // as the root manifest says
	Blocks       int                   `json:"blocks"` // unique blocks under root
	Reused       int                   `json:"reused"` // already stored before this fetch
	Fetched      int                   `json:"fetched"`
	FetchedBytes int64                 `json:"fetched_bytes"`
	Duplicates   int                   `json:"duplicates"` // received twice (end-game requests)
	Bad          int                   `json:"bad"`        // failed verification, dropped
	Peers        map[string]*PeerStats `json:"peers"`      // by peer ID string
	Elapsed      time.Duration         `json:"elapsed"`
}

type item struct {
	c        cid.Cid
	size     int // expected bytes; 0 for a manifest (unknown until read)
	manifest bool
	depth    int
	wantType wire.Type // for manifests below the root: what the parent says
	wantSize uint64
	holders  map[peer.ID]bool
	got      bool // a verified copy is being stored or processed
	done     bool
}

func (it *item) est() int {
	if it.manifest {
		return 256 << 10
	}
	return it.size
}

type worker struct {
	p       peer.ID
	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{}
	asked   map[cid.Cid]*item
	missing map[cid.Cid]bool
	bytes   int // requested, not yet received
	window  int // how many bytes may be outstanding at this peer
	serving bool
	haveOK  chan struct{} // closed when the peer says it has the root
	stats   *PeerStats
	fault   bool // misbehaved: never again in this fetch
	dead    bool // workerDone ran: its sender must not claim more
}

type peerState struct {
	failedAt time.Time // when its last worker ended
	next     time.Time
	backoff  time.Duration
	excluded bool
	refused  string
}

type vjob struct {
	w    *worker
	it   *item
	data []byte
	buf  *[]byte
}

type fetch struct {
	s      *Service
	root   cid.Cid
	opts   FetchOptions
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	items     map[cid.Cid]*item
	queue     []*item
	remaining int
	workers   map[peer.ID]*worker
	peers     map[peer.ID]*peerState
	res       FetchResult
	stats     map[peer.ID]*PeerStats
	total     int64
	doneBytes int64
	err       error
	served    bool
	private   bool // a holder said the root is private: keep it so here

	verifyCh chan vjob
	events   chan struct{}
	doneCh   chan struct{}
	doneOnce sync.Once
	wg       sync.WaitGroup
}

// Fetch makes root and everything below it present in the local store,
// fetching what is missing from peers, and pins it unless opts.NoPin. It
// returns when the root is complete, when ctx ends, or when no peer has
// served it for the no-provider timeout. Blocks already stored are never
// fetched again, so calling Fetch again after a failure resumes.
func (s *Service) Fetch(ctx context.Context, root cid.Cid, opts FetchOptions) (*FetchResult, error) {
	if err := wire.CheckCID(root); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if root.Type() != wire.CodecManifest {
		return nil, fmt.Errorf("fetch %s: codec 0x%x is not a manifest (0x%x); fetch the root CID that add printed", root, root.Type(), wire.CodecManifest)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.wg.Done()
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 250 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	f := &fetch{
		s: s, root: root, opts: opts, start: time.Now(), ctx: ctx, cancel: cancel,
		items: map[cid.Cid]*item{}, workers: map[peer.ID]*worker{}, peers: map[peer.ID]*peerState{},
		verifyCh: make(chan vjob, 4), events: make(chan struct{}, 1), doneCh: make(chan struct{}),
		total: -1,
	}
	f.res.Root = CID{root}
	f.stats = map[peer.ID]*PeerStats{}
	res, err := f.run()
	if err != nil {
		return res, fmt.Errorf("fetch %s: %w", root, err)
	}
	if err := s.st.flush(); err != nil {
		return res, fmt.Errorf("fetch %s: %w", root, err)
	}
	f.mu.Lock()
	private := f.private
	f.mu.Unlock()
	if private && !s.isPrivate(root) {
		// The owner allowed us, not the world: do not re-serve it to
		// others or announce it. SetPolicy can widen this explicitly.
		if err := s.SetPolicy(root, []peer.ID{}); err != nil {
			return res, fmt.Errorf("fetch %s: keep private: %w", root, err)
		}
	}
	if !opts.NoPin {
		if err := s.st.pin(root); err != nil {
			return res, fmt.Errorf("fetch %s: %w", root, err)
		}
	}
	s.refreshPrivate(root)
	s.announce(root)
	return res, nil
}

func (f *fetch) run() (*FetchResult, error) {
	f.mu.Lock()
	f.remaining = 1
	f.items[f.root] = &item{c: f.root, manifest: true, holders: map[peer.ID]bool{}}
	f.res.Blocks = 1
	f.mu.Unlock()
	if f.s.st.has(f.root) {
		f.mu.Lock()
		f.res.Reused++
		f.mu.Unlock()
		if err := f.processManifest(f.items[f.root], nil); err != nil {
			return f.result(), err
		}
	} else {
		f.mu.Lock()
		f.queue = append(f.queue, f.items[f.root])
		f.mu.Unlock()
	}
	if f.isDone() {
		f.report(true)
		return f.result(), nil
	}
	// Verifiers hash (CPU) and then write and fsync (disk wait); twice as
	// many as cores lets fsyncs overlap, which the filesystem journal
	// commits together. Measured here: 2 writers of 256 KiB files with
	// fsync cost 1.2 CPU s/GiB, 8 writers 2.4.
	n := 2 * runtime.GOMAXPROCS(0)
	var vwg sync.WaitGroup
	for i := 0; i < n; i++ {
		vwg.Add(1)
		go func() { defer vwg.Done(); f.verifier() }()
	}
	err := f.loop()
	// Stop in order: workers and look-ups first (they feed the
	// verifiers), then the verifiers.
	f.cancel()
	f.wg.Wait()
	close(f.verifyCh)
	vwg.Wait()
	if err == nil {
		err = f.fatal()
	}
	f.report(err == nil)
	return f.result(), err
}

func (f *fetch) result() *FetchResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.res
	r.Peers = map[string]*PeerStats{}
	for p, st := range f.stats {
		c := *st
		r.Peers[p.String()] = &c
	}
	r.Elapsed = time.Since(f.start)
	return &r
}

func (f *fetch) isDone() bool {
	select {
	case <-f.doneCh:
		return true
	default:
		return false
	}
}

func (f *fetch) loop() error {
	s := f.s
	found := make(chan peer.ID, 16)
	var lastDHT time.Time
	findDHT := func() {
		if s.rt == nil || time.Since(lastDHT) < 5*time.Second {
			return
		}
		lastDHT = time.Now()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
			defer cancel()
			for ai := range s.rt.FindProvidersAsync(ctx, f.root, 20) {
				if ai.ID == s.h.ID() {
					continue
				}
				if len(ai.Addrs) > 0 {
					s.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, 10*time.Minute)
				}
				select {
				case found <- ai.ID:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	scan := func() {
		s.log.Debug("fetch: looking for holders", "root", f.root, "connected", len(s.h.Network().Peers()), "workers", f.activeWorkers())
		for _, p := range f.opts.Providers {
			f.startWorker(p)
		}
		// Peers that served this fetch before are asked again even when
		// the connection is gone (a holder that restarted): the dial uses
		// the addresses in the peerstore, and back-off keeps it cheap.
		for _, p := range f.pastServers() {
			f.startWorker(p)
		}
		if f.opts.onlyProviders {
			return
		}
		for _, p := range s.h.Network().Peers() {
			f.startWorker(p)
		}
		if f.activeWorkers() == 0 || !f.anyServing() {
			findDHT()
		}
	}
	scan()
	scanT := time.NewTicker(time.Second)
	defer scanT.Stop()
	progT := time.NewTicker(f.opts.ProgressInterval)
	defer progT.Stop()
	lastServing := time.Now()
	for {
		select {
		case <-f.doneCh:
			return nil
		case <-f.ctx.Done():
			if err := f.fatal(); err != nil {
				return err
			}
			if f.s.ctx.Err() != nil {
				return ErrClosed
			}
			return fmt.Errorf("%d blocks still missing: %w", f.missingCount(), f.ctx.Err())
		case p := <-found:
			f.startWorker(p)
		case <-f.events:
			if err := f.fatal(); err != nil {
				return err
			}
			if f.activeWorkers() == 0 {
				if msg := f.refusal(); msg != "" && !f.everServed() {
					return fmt.Errorf("%w: %s", ErrRefused, msg)
				}
				scan()
			}
		case <-scanT.C:
			if f.activeWorkers() < s.cfg.MaxPeers {
				scan()
			}
		case <-progT.C:
			f.report(false)
		}
		if f.anyServing() {
			lastServing = time.Now()
		} else if time.Since(lastServing) > s.cfg.NoProviderTimeout {
			if msg := f.refusal(); msg != "" {
				return fmt.Errorf("%w: %s", ErrRefused, msg)
			}
			return fmt.Errorf("%d blocks still missing, no peer served any for %v: %w",
				f.missingCount(), s.cfg.NoProviderTimeout, ErrNoProviders)
		}
	}
}

func (f *fetch) fatal() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fetch) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
	f.notify()
}

func (f *fetch) notify() {
	select {
	case f.events <- struct{}{}:
	default:
	}
}

func (f *fetch) activeWorkers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.workers)
}

func (f *fetch) anyServing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.workers {
		if w.serving {
			return true
		}
	}
	return false
}

func (f *fetch) everServed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served
}

func (f *fetch) refusal() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, ps := range f.peers {
		if ps.refused != "" {
			return fmt.Sprintf("peer %s: %s", p, ps.refused)
		}
	}
	return ""
}

func (f *fetch) missingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.remaining
}

func (f *fetch) report(final bool) {
	if f.opts.Progress == nil {
		return
	}
	f.mu.Lock()
	p := Progress{
		Root: CID{f.root}, TotalBytes: f.total, DoneBytes: f.doneBytes, FetchedBytes: f.res.FetchedBytes,
		TotalBlocks: f.res.Blocks, DoneBlocks: f.res.Blocks - f.remaining, Elapsed: time.Since(f.start), Done: final,
	}
	for _, w := range f.workers {
		if w.serving {
			p.Peers++
		}
	}
	if final {
		// Workers are gone by now: report how many peers served.
		p.Peers = 0
		for _, st := range f.stats {
			if st.Blocks > 0 {
				p.Peers++
			}
		}
	}
	f.mu.Unlock()
	f.opts.Progress(p)
}

// startWorker begins fetching from p unless p is us, busy, excluded or
// backing off.
func (f *fetch) startWorker(p peer.ID) {
	if p == f.s.h.ID() || f.ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.remaining == 0 || len(f.workers) >= f.s.cfg.MaxPeers {
		return
	}
	if _, ok := f.workers[p]; ok {
		return
	}
	ps := f.peers[p]
	if ps == nil {
		ps = &peerState{backoff: time.Second}
		f.peers[p] = ps
	}
	if ps.excluded || time.Now().Before(ps.next) && !f.reconnected(p, ps.failedAt) {
		f.s.log.Debug("fetch: not asking peer yet", "peer", p, "excluded", ps.excluded, "retry_in", time.Until(ps.next))
		return
	}
	st := f.stats[p]
	if st == nil {
		st = &PeerStats{}
		f.stats[p] = st
	}
	ctx, cancel := context.WithCancel(f.ctx)
	// Each peer starts with a small window that grows by what it delivers
	// (slow start), so a peer that turns out slow never holds much of the
	// work; Busy answers halve it.
	w := &worker{p: p, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		window: min(f.s.cfg.Window, 2<<20),
		asked:  map[cid.Cid]*item{}, missing: map[cid.Cid]bool{}, stats: st}
	f.workers[p] = w
	f.wg.Add(1)
	go f.runWorker(w)
}

func (f *fetch) pastServers() []peer.ID {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []peer.ID
	for p, st := range f.stats {
		if st.Blocks > 0 && !f.peers[p].excluded {
			out = append(out, p)
		}
	}
	return out
}

// reconnected reports whether p has a connection opened after t: a holder
// that restarted is worth asking again at once, whatever its back-off.
func (f *fetch) reconnected(p peer.ID, t time.Time) bool {
	for _, c := range f.s.h.Network().ConnsToPeer(p) {
		if c.Stat().Opened.After(t) {
			return true
		}
	}
	return false
}

// workerDone returns what w had asked for to the queue.
func (f *fetch) workerDone(w *worker, err error) {
	w.cancel()
	f.mu.Lock()
	w.dead = true
	for c, it := range w.asked {
		delete(it.holders, w.p)
		delete(w.asked, c)
		if !it.done && !it.got && len(it.holders) == 0 {
			f.queue = append([]*item{it}, f.queue...)
		}
	}
	delete(f.workers, w.p)
	ps := f.peers[w.p]
	if w.fault {
		ps.excluded = true
	}
	if err != nil && w.stats.Err == "" && f.ctx.Err() == nil {
		w.stats.Err = err.Error()
	}
	ps.failedAt = time.Now()
	ps.next = ps.failedAt.Add(ps.backoff)
	if ps.backoff < 4*time.Second {
		ps.backoff *= 2
	}
	if w.serving && err == nil {
		ps.backoff = time.Second
	}
	others := make([]*worker, 0, len(f.workers))
	for _, o := range f.workers {
		others = append(others, o)
	}
	f.mu.Unlock()
	for _, o := range others {
		wakeUp(o)
	}
	f.notify()
}

func wakeUp(w *worker) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (f *fetch) wakeAll() {
	f.mu.Lock()
	ws := make([]*worker, 0, len(f.workers))
	for _, w := range f.workers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	for _, w := range ws {
		wakeUp(w)
	}
}

// next picks up to max blocks for w within its window: queued blocks first
// (so a fast peer simply takes more), then, when the queue is empty, blocks
// still outstanding at one other peer (end game, so a slow or dead peer
// does not hold up the tail).
func (f *fetch) next(w *worker, max int) []*item {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.dead {
		return nil
	}
	window := w.window
	var out []*item
	take := func(it *item) {
		it.holders[w.p] = true
		w.asked[it.c] = it
		w.bytes += it.est()
		out = append(out, it)
	}
	var skipped []*item // usually none: re-queued below without copying the queue
	for len(out) < max && w.bytes < window && len(f.queue) > 0 {
		it := f.queue[0]
		f.queue = f.queue[1:]
		switch {
		case it.done || it.got || len(it.holders) > 0:
		case w.missing[it.c]:
			skipped = append(skipped, it)
		default:
			take(it)
		}
	}
	if len(skipped) > 0 {
		f.queue = append(skipped, f.queue...)
	}
	if len(out) == 0 && len(f.queue) == len(skipped) && w.bytes == 0 {
		for _, it := range f.items {
			if len(out) >= 4 {
				break
			}
			if !it.done && !it.got && len(it.holders) == 1 && !it.holders[w.p] && !w.missing[it.c] {
				take(it)
			}
		}
	}
	return out
}

func (f *fetch) runWorker(w *worker) {
	defer f.wg.Done()
	err := f.work(w)
	f.s.log.Debug("fetch worker ended", "root", f.root, "peer", w.p, "serving", w.serving, "err", err)
	f.workerDone(w, err)
}

func (f *fetch) work(w *worker) error {
	s := f.s
	// A connection we are pulling blocks over must not be pruned by the
	// connection manager half way.
	tag := "daitn-transfer-" + f.root.String()
	s.h.ConnManager().Protect(w.p, tag)
	defer s.h.ConnManager().Unprotect(w.p, tag)
	s.log.Debug("fetch worker start", "root", f.root, "peer", w.p)
	octx, ocancel := context.WithTimeout(w.ctx, 15*time.Second)
	str, err := s.h.NewStream(octx, w.p, wire.Protocol)
	ocancel()
	if err != nil {
		return fmt.Errorf("open stream to %s: %w", w.p, err)
	}
	if err := str.Scope().SetService(wire.ServiceName); err != nil {
		_ = str.Reset()
		return fmt.Errorf("attach stream to %s to service: %w", w.p, err)
	}
	// A cancelled worker (fetch done, peer faulty) must not leave its
	// reader blocked.
	stop := context.AfterFunc(w.ctx, func() { _ = str.Reset() })
	defer stop()
	br := bufio.NewReaderSize(str, 64<<10)
	bw := bufio.NewWriterSize(str, 8<<10)
	// Ask "have you got it?" and, if nobody is fetching the root manifest
	// yet, ask for it in the same flight: a small model then arrives in two
	// round trips instead of three. The answers may come in either order.
	_ = str.SetWriteDeadline(time.Now().Add(10 * time.Second))
	err = wire.WriteRequest(bw, &wire.Request{Kind: wire.KindHave, Root: f.root})
	if rootItem := f.claimRoot(w); err == nil && rootItem != nil {
		err = wire.WriteRequest(bw, &wire.Request{Kind: wire.KindWant, Root: f.root, CIDs: []cid.Cid{f.root}})
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		_ = str.Reset()
		return fmt.Errorf("ask %s for %s: %w", w.p, f.root, err)
	}
	hdr := make([]byte, 0, wire.MaxResponseHeader)
	w.haveOK = make(chan struct{})

	// Sender: keeps the window full.
	sendErr := make(chan error, 1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		select { // nothing more is asked before the peer says it has the root
		case <-w.haveOK:
		case <-w.ctx.Done():
			sendErr <- nil
			return
		}
		for {
			batch := f.next(w, 256)
			if len(batch) == 0 {
				select {
				case <-w.wake:
					continue
				case <-w.ctx.Done():
					sendErr <- nil
					return
				}
			}
			req := &wire.Request{Kind: wire.KindWant, Root: f.root}
			for _, it := range batch {
				req.CIDs = append(req.CIDs, it.c)
			}
			_ = str.SetWriteDeadline(time.Now().Add(writeTimeout))
			err := wire.WriteRequest(bw, req)
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				sendErr <- err
				w.cancel()
				return
			}
		}
	}()
	err = f.readLoop(w, str, br, hdr)
	w.cancel()
	_ = str.Reset()
	if err == nil {
		select {
		case err = <-sendErr:
		default:
		}
	}
	return err
}

func (f *fetch) readLoop(w *worker, str network.Stream, br *bufio.Reader, hdr []byte) error {
	for {
		deadline := idleTimeout / 4
		if !w.serving {
			deadline = 10 * time.Second // for the answer to "have you got it?"
		}
		_ = str.SetReadDeadline(time.Now().Add(deadline))
		resp, err := wire.ReadResponse(br, hdr)
		if err != nil {
			f.mu.Lock()
			idle := len(w.asked) == 0
			f.mu.Unlock()
			if w.ctx.Err() != nil || idle && errors.Is(err, context.DeadlineExceeded) || idle && isTimeout(err) {
				// Cancelled, or nothing was outstanding: a clean end.
				return nil
			}
			if errors.Is(err, wire.ErrFrameTooLarge) {
				f.fault(w, err.Error())
			}
			return fmt.Errorf("read from %s: %w", w.p, err)
		}
		if resp.Kind == wire.KindHaveResp {
			if done, err := f.onHave(w, resp); done || err != nil {
				return err
			}
			continue
		}
		f.mu.Lock()
		it := w.asked[resp.CID]
		if it != nil && resp.Kind != wire.KindBlock {
			delete(w.asked, resp.CID)
			delete(it.holders, w.p)
			w.bytes -= it.est()
		}
		f.mu.Unlock()
		if it == nil {
			if resp.Kind == wire.KindError {
				return fmt.Errorf("%s ended the stream: %s", w.p, resp.Msg)
			}
			f.fault(w, fmt.Sprintf("sent %s, which was not asked for", resp.CID))
			return errors.New("protocol violation: unsolicited block")
		}
		switch resp.Kind {
		case wire.KindBlock:
			limit := it.size
			if it.manifest {
				limit = wire.MaxBlockSize
			}
			if it.manifest && resp.Len > limit || !it.manifest && resp.Len != limit {
				f.fault(w, fmt.Sprintf("block %s is %d bytes, the manifest says %d", it.c, resp.Len, limit))
				return fmt.Errorf("%s sent a block of the wrong size", w.p)
			}
			var buf *[]byte
			var data []byte
			if resp.Len <= wire.MaxChunkSize {
				buf = getBuf()
				data = (*buf)[:resp.Len]
			} else {
				data = make([]byte, resp.Len)
			}
			if _, err := io.ReadFull(br, data); err != nil {
				if buf != nil {
					putBuf(buf)
				}
				if w.ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("read block %s from %s: %w", it.c, w.p, err)
			}
			f.mu.Lock()
			delete(w.asked, it.c)
			w.bytes -= it.est()
			w.window = min(w.window+resp.Len, f.s.cfg.Window)
			f.mu.Unlock()
			wakeUp(w)
			select {
			case f.verifyCh <- vjob{w: w, it: it, data: data, buf: buf}:
			case <-w.ctx.Done():
				if buf != nil {
					putBuf(buf)
				}
				f.release(w, it)
				return nil
			}
		case wire.KindNotFound, wire.KindBusy:
			f.mu.Lock()
			if resp.Kind == wire.KindNotFound {
				w.missing[it.c] = true
			} else {
				w.window = max(w.window/2, 256<<10)
			}
			if !it.done && !it.got && len(it.holders) == 0 {
				f.queue = append(f.queue, it)
			}
			f.mu.Unlock()
			f.wakeAll()
		case wire.KindRefused:
			f.mu.Lock()
			f.peers[w.p].refused = resp.Msg
			f.peers[w.p].excluded = true
			if !it.done && !it.got && len(it.holders) == 0 {
				f.queue = append(f.queue, it)
			}
			f.mu.Unlock()
			return fmt.Errorf("%s refused %s: %s: %w", w.p, it.c, resp.Msg, ErrRefused)
		default:
			f.mu.Lock()
			if !it.done && !it.got && len(it.holders) == 0 {
				f.queue = append(f.queue, it)
			}
			f.mu.Unlock()
			return fmt.Errorf("%s ended the stream: %s", w.p, resp.Msg)
		}
	}
}

// claimRoot gives the root manifest to w if no one is fetching it yet.
func (f *fetch) claimRoot(w *worker) *item {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.items[f.root]
	if w.dead || it == nil || it.done || it.got || len(it.holders) > 0 {
		return nil
	}
	it.holders[w.p] = true
	w.asked[it.c] = it
	w.bytes += it.est()
	return it
}

// onHave handles the answer to the have request: done means the worker
// should stop (the peer does not have the root or refuses it).
func (f *fetch) onHave(w *worker, resp *wire.Response) (bool, error) {
	if !resp.CID.Equals(f.root) || w.serving {
		f.fault(w, fmt.Sprintf("unexpected have answer for %s", resp.CID))
		return true, errors.New("protocol violation: unexpected have answer")
	}
	switch resp.Have {
	case wire.HaveRefused:
		f.mu.Lock()
		f.peers[w.p].refused = "root " + f.root.String() + " is private and this node is not on its allow-list"
		f.mu.Unlock()
		return true, ErrRefused
	case wire.HaveNone:
		return true, nil
	}
	f.mu.Lock()
	w.serving = true
	f.served = true
	if resp.Private {
		f.private = true
	}
	f.mu.Unlock()
	close(w.haveOK)
	f.notify()
	return false, nil
}

// release gives up w's claim on it (a block received but not processed).
func (f *fetch) release(w *worker, it *item) {
	f.mu.Lock()
	delete(it.holders, w.p)
	if !it.done && !it.got && len(it.holders) == 0 {
		f.queue = append([]*item{it}, f.queue...)
	}
	f.mu.Unlock()
}

// fault excludes w's peer from this fetch and penalises it.
func (f *fetch) fault(w *worker, why string) {
	f.mu.Lock()
	w.fault = true
	w.stats.Bad++
	f.res.Bad++
	f.mu.Unlock()
	f.s.penalise(w.p, why)
	w.cancel()
}

func (f *fetch) verifier() {
	for j := range f.verifyCh {
		f.verifyOne(j)
		if j.buf != nil {
			putBuf(j.buf)
		}
	}
}

func (f *fetch) verifyOne(j vjob) {
	if err := wire.Verify(j.it.c, j.data); err != nil {
		f.release(j.w, j.it)
		f.fault(j.w, err.Error())
		f.wakeAll()
		return
	}
	// Claim the block before storing it, in the same critical section that
	// drops our hold on it, so no other worker is asked for it meanwhile and
	// a second copy (end game) is counted as a duplicate, never stored twice.
	f.s.fetchedBlocks.Add(1)
	f.s.fetchedBytes.Add(int64(len(j.data)))
	f.mu.Lock()
	delete(j.it.holders, j.w.p)
	j.w.stats.Blocks++
	j.w.stats.Bytes += int64(len(j.data))
	if j.it.done || j.it.got {
		f.res.Duplicates++
		f.mu.Unlock()
		return
	}
	j.it.got = true
	f.mu.Unlock()
	if err := f.s.st.put(j.it.c, j.data, false); err != nil {
		f.fail(err)
		return
	}
	f.mu.Lock()
	f.res.Fetched++
	f.res.FetchedBytes += int64(len(j.data))
	f.mu.Unlock()
	if j.it.manifest {
		if err := f.processManifest(j.it, j.data); err != nil {
			f.fail(err)
		}
		return
	}
	f.markDone(j.it, len(j.data))
}

func (f *fetch) markDone(it *item, n int) {
	f.mu.Lock()
	if it.done {
		f.mu.Unlock()
		return
	}
	it.done = true
	f.remaining--
	f.doneBytes += int64(n)
	last := f.remaining == 0
	f.mu.Unlock()
	if last {
		f.doneOnce.Do(func() { close(f.doneCh) })
	}
}

// processManifest decodes manifest it (data, or from the store when nil),
// queues the blocks it lists that are not stored, and descends into stored
// sub-manifests. Only then is it done, so the fetch cannot finish early.
func (f *fetch) processManifest(it *item, data []byte) error {
	stack := []*item{it}
	pending := [][]byte{data}
	for len(stack) > 0 {
		cur, b := stack[len(stack)-1], pending[len(pending)-1]
		stack, pending = stack[:len(stack)-1], pending[:len(pending)-1]
		if b == nil {
			var err error
			if b, err = f.s.st.get(cur.c, nil, wire.MaxBlockSize); err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
					return err
				}
				// Rotted on disk (and removed) or collected meanwhile:
				// fetch it like any missing block.
				f.s.log.Warn("stored manifest unusable; fetching it again", "cid", cur.c, "err", err)
				f.mu.Lock()
				f.res.Reused--
				f.queue = append(f.queue, cur)
				f.mu.Unlock()
				continue
			}
		}
		m, err := wire.DecodeManifest(cur.c, b)
		if err != nil {
			return fmt.Errorf("block %s: %w", cur.c, err)
		}
		if cur.depth > 0 && (m.Type != cur.wantType || m.Size != cur.wantSize) {
			return fmt.Errorf("block %s: %w: is a %s of %d bytes, its directory says %s of %d",
				cur.c, wire.ErrBadManifest, m.Type, m.Size, cur.wantType, cur.wantSize)
		}
		if cur.depth == 0 {
			if err := f.checkSpace(m.Size); err != nil {
				return err
			}
			f.mu.Lock()
			f.res.Size = m.Size
			f.total = int64(len(b))
			f.mu.Unlock()
		}
		var newItems []*item
		f.mu.Lock()
		f.doneBytes += int64(len(b))
		if cur.depth > 0 {
			f.total += int64(len(b))
		}
		add := func(n *item) {
			if _, ok := f.items[n.c]; ok {
				return
			}
			n.holders = map[peer.ID]bool{}
			f.items[n.c] = n
			f.res.Blocks++
			f.remaining++
			if !n.manifest {
				f.total += int64(n.size)
			}
			newItems = append(newItems, n)
		}
		for _, ch := range m.Chunks {
			add(&item{c: ch.CID, size: int(ch.Size)})
		}
		for _, e := range m.Entries {
			if cur.depth+1 > wire.MaxDepth {
				f.mu.Unlock()
				return fmt.Errorf("block %s: directories nested deeper than %d: %w", cur.c, wire.MaxDepth, wire.ErrBadManifest)
			}
			add(&item{c: e.CID, manifest: true, depth: cur.depth + 1, wantType: e.Type, wantSize: e.Size})
		}
		f.mu.Unlock()
		var queue []*item
		for _, n := range newItems {
			if !f.s.st.has(n.c) {
				queue = append(queue, n)
				continue
			}
			f.mu.Lock()
			f.res.Reused++
			f.mu.Unlock()
			if n.manifest {
				stack = append(stack, n)
				pending = append(pending, nil)
			} else {
				f.markDone(n, n.size)
			}
		}
		f.mu.Lock()
		f.queue = append(f.queue, queue...)
		f.mu.Unlock()
		// The manifest's own bytes are already counted above.
		f.markDone(cur, 0)
		if len(queue) > 0 {
			f.wakeAll()
		}
	}
	return nil
}

func (f *fetch) checkSpace(size uint64) error {
	if max := f.s.cfg.MaxFetchSize; max > 0 && size > uint64(max) {
		return fmt.Errorf("root is %d bytes, this node accepts at most %d: %w", size, max, ErrTooLarge)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.s.st.dir, &st); err == nil {
		free := uint64(st.Bavail) * uint64(st.Bsize)
		if size+uint64(f.s.cfg.DiskReserve) > free {
			return fmt.Errorf("root is %d bytes, only %d bytes free in %s (keeping %d in reserve): %w",
				size, free, f.s.st.dir, f.s.cfg.DiskReserve, ErrTooLarge)
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// fetchFrom fetches root from p only (tests and the hostile-peer harness).
func (s *Service) fetchFrom(ctx context.Context, root cid.Cid, p peer.ID) (*FetchResult, error) {
	return s.Fetch(ctx, root, FetchOptions{Providers: []peer.ID{p}, onlyProviders: true})
}
