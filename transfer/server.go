package transfer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/transfer/wire"
)

const (
	// serverQueue bounds wants accepted but not yet answered on one stream:
	// a peer asking for millions of blocks is simply not read any further
	// until it has consumed what it asked for.
	serverQueue   = 512
	serverLoaders = 2
	idleTimeout   = 2 * time.Minute
	writeTimeout  = 30 * time.Second
)

type serveTask struct {
	kind wire.Kind
	root cid.Cid
	c    cid.Cid
}

type serveResult struct {
	resp     wire.Response
	buf      *[]byte // pooled buffer holding the block, or nil
	data     []byte
	reserved int
}

func (s *Service) track(str network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.streams[str] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Service) untrack(str network.Stream) {
	s.mu.Lock()
	delete(s.streams, str)
	s.mu.Unlock()
}

// handleStream serves one peer: a reader decodes requests into a bounded
// queue, loaders read and verify blocks off disk (in parallel with the
// network), and this goroutine writes the answers in completion order.
func (s *Service) handleStream(str network.Stream) {
	if err := str.Scope().SetService(wire.ServiceName); err != nil {
		s.log.Debug("attach stream to service", "err", err)
		_ = str.Reset()
		return
	}
	if !s.track(str) {
		_ = str.Reset()
		return
	}
	defer s.wg.Done()
	defer s.untrack(str)
	remote := str.Conn().RemotePeer()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()

	tasks := make(chan serveTask, serverQueue)
	results := make(chan serveResult, 2)
	var (
		readErr error
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(tasks)
		br := bufio.NewReaderSize(str, 16<<10)
		for {
			_ = str.SetReadDeadline(time.Now().Add(idleTimeout))
			req, err := wire.ReadRequest(br)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			switch req.Kind {
			case wire.KindHave:
				select {
				case tasks <- serveTask{kind: wire.KindHave, root: req.Root, c: req.Root}:
				case <-ctx.Done():
					return
				}
			case wire.KindWant:
				for _, c := range req.CIDs {
					select {
					case tasks <- serveTask{kind: wire.KindWant, root: req.Root, c: c}:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	var lwg sync.WaitGroup
	for i := 0; i < serverLoaders; i++ {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			for t := range tasks {
				r := s.serveOne(str, remote, t)
				select {
				case results <- r:
				case <-ctx.Done():
					s.releaseResult(str, r)
				}
			}
		}()
	}
	go func() { lwg.Wait(); close(results) }()

	bw := bufio.NewWriterSize(str, 32<<10)
	var werr error
	for r := range results {
		if werr == nil {
			_ = str.SetWriteDeadline(time.Now().Add(writeTimeout))
			werr = wire.WriteResponse(bw, &r.resp, r.data)
			if werr == nil && len(results) == 0 {
				werr = bw.Flush()
			}
			if werr != nil {
				cancel() // stop the reader and loaders; drain what they hold
				_ = str.Reset()
			} else if r.resp.Kind == wire.KindBlock {
				s.servedBlocks.Add(1)
				s.servedBytes.Add(int64(len(r.data)))
			}
		}
		s.releaseResult(str, r)
	}
	cancel()
	_ = str.SetReadDeadline(time.Now()) // unblock a reader stuck on a slow peer
	wg.Wait()
	if werr == nil && readErr != nil {
		// Tell the peer what was wrong, then cut it off.
		_ = str.SetWriteDeadline(time.Now().Add(time.Second))
		_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindError, CID: wire.Sum(wire.CodecRaw, nil), Msg: truncate(readErr.Error())}, nil)
		_ = bw.Flush()
		s.log.Debug("bad request", "peer", remote, "err", readErr)
		// Close, not Reset: a reset could discard the error before the
		// peer reads it. The read side is closed, so nothing more is read.
		_ = str.Close()
		return
	}
	if werr != nil || ctx.Err() != nil && s.ctx.Err() != nil {
		_ = str.Reset()
		return
	}
	_ = bw.Flush()
	_ = str.Close()
}

func (s *Service) releaseResult(str network.Stream, r serveResult) {
	if r.reserved > 0 {
		str.Scope().ReleaseMemory(r.reserved)
	}
	if r.buf != nil {
		putBuf(r.buf)
	}
}

func truncate(m string) string {
	if len(m) > wire.MaxMsgLen {
		return m[:wire.MaxMsgLen]
	}
	return m
}

func (s *Service) serveOne(str network.Stream, remote peer.ID, t serveTask) serveResult {
	if t.kind == wire.KindHave {
		st := wire.HaveNone
		switch {
		case !s.allowed(remote, t.root, t.root):
			st = wire.HaveRefused
			s.refusedReqs.Add(1)
		case s.st.has(t.root):
			st = wire.HavePartial
			if ok, _ := s.Complete(t.root); ok {
				st = wire.HaveFull
			}
		}
		priv := st != wire.HaveRefused && s.isPrivate(t.root)
		return serveResult{resp: wire.Response{Kind: wire.KindHaveResp, CID: t.root, Have: st, Private: priv}}
	}
	if !s.allowed(remote, t.root, t.c) {
		s.refusedReqs.Add(1)
		return serveResult{resp: wire.Response{Kind: wire.KindRefused, CID: t.c,
			Msg: "root " + t.root.String() + " is private and peer " + remote.String() + " is not on its allow-list"}}
	}
	size := s.st.size(t.c)
	if size < 0 {
		return serveResult{resp: wire.Response{Kind: wire.KindNotFound, CID: t.c}}
	}
	if size > wire.MaxBlockSize {
		size = wire.MaxBlockSize
	}
	if err := str.Scope().ReserveMemory(int(size), network.ReservationPriorityAlways); err != nil {
		return serveResult{resp: wire.Response{Kind: wire.KindBusy, CID: t.c, Msg: "memory limit reached, retry later"}}
	}
	r := serveResult{reserved: int(size)}
	limit := wire.MaxChunkSize
	if t.c.Type() == wire.CodecManifest {
		limit = wire.MaxBlockSize
	} else {
		r.buf = getBuf()
	}
	var buf []byte
	if r.buf != nil {
		buf = (*r.buf)[:0]
	}
	data, err := s.st.get(t.c, buf, limit)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			s.log.Error("stored block failed verification and was removed", "cid", t.c, "err", err)
		}
		r.resp = wire.Response{Kind: wire.KindNotFound, CID: t.c}
		return r
	}
	r.data = data
	r.resp = wire.Response{Kind: wire.KindBlock, CID: t.c, Len: len(data)}
	return r
}
