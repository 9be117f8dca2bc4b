package transfer

import (
	"bufio"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/daitn/daitn/transfer/wire"
)

// hostile is a raw /daitn/transfer/1.0.0 handler that knows the right
// blocks but answers wrongly in one of several ways.
type hostile struct {
	mode   string
	blocks map[cid.Cid][]byte
	mu     sync.Mutex
	served int
}

// blocksOf reads every block under root from s.
func blocksOf(t testing.TB, s *Service, root cid.Cid) map[cid.Cid][]byte {
	t.Helper()
	out := map[cid.Cid][]byte{}
	if err := s.walk(root, func(c cid.Cid, present bool) {
		b, err := s.st.get(c, nil, wire.MaxBlockSize)
		if err != nil {
			t.Fatal(err)
		}
		out[c] = b
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *hostile) install(hst host.Host) {
	hst.SetStreamHandler(wire.Protocol, h.handle)
}

func (h *hostile) handle(str network.Stream) {
	defer str.Close()
	br := bufio.NewReader(str)
	bw := bufio.NewWriter(str)
	defer bw.Flush()
	for {
		req, err := wire.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Kind == wire.KindHave {
			_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindHaveResp, CID: req.Root, Have: wire.HaveFull}, nil)
			_ = bw.Flush()
			continue
		}
		for _, c := range req.CIDs {
			b, ok := h.blocks[c]
			if !ok {
				_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindNotFound, CID: c}, nil)
				continue
			}
			h.mu.Lock()
			h.served++
			h.mu.Unlock()
			isChunk := c.Type() == wire.CodecRaw
			switch {
			case h.mode == "corrupt" && isChunk:
				bad := append([]byte(nil), b...)
				bad[len(bad)/2] ^= 0x40
				_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindBlock, CID: c, Len: len(bad)}, bad)
			case h.mode == "oversize" && isChunk:
				// Claims more bytes than the manifest allows: an
				// endless chunk as far as the receiver is concerned.
				big := make([]byte, len(b)+1)
				_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindBlock, CID: c, Len: len(big)}, big)
			case h.mode == "truncated" && isChunk:
				hdr, _ := wire.EncodeResponse(&wire.Response{Kind: wire.KindBlock, CID: c, Len: len(b)})
				_, _ = bw.Write(append([]byte{byte(len(hdr))}, hdr...))
				_, _ = bw.Write(b[:len(b)/2])
				_ = bw.Flush()
				_ = str.Reset()
				return
			case h.mode == "unsolicited" && isChunk:
				other := wire.Sum(wire.CodecRaw, []byte("not asked"))
				_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindBlock, CID: other, Len: 9}, []byte("not asked"))
			case h.mode == "giantframe" && isChunk:
				_, _ = bw.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x7f})
				_ = bw.Flush()
				_, _ = io.Copy(io.Discard, br)
				return
			case h.mode == "slow" && isChunk:
				// An honest but slow holder: 30ms per chunk.
				_ = bw.Flush()
				time.Sleep(30 * time.Millisecond)
				_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindBlock, CID: c, Len: len(b)}, b)
				_ = bw.Flush()
			default:
				_ = wire.WriteResponse(bw, &wire.Response{Kind: wire.KindBlock, CID: c, Len: len(b)}, b)
			}
		}
		if err := bw.Flush(); err != nil {
			return
		}
	}
}

var errIgnore = errors.New("ignore")
