package transfer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"

	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/transfer/wire"
)

// A hostile client speaks the protocol wrongly; the server answers with a
// clear error or refusal, and keeps serving honest peers.
func TestHostileClients(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 3)
	srv := newSvc(t, net.Peers[0], "")
	data := randBytes(20, 1<<20)
	root, _ := srv.AddBytes(context.Background(), data)
	attacker := net.Peers[1].Host
	to := net.Peers[0].Host.ID()

	frame := func(b []byte) []byte {
		return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
	}
	em, _ := cbor.CoreDetEncOptions().EncMode()
	tooMany := make([][]byte, 1500)
	for i := range tooMany {
		tooMany[i] = wire.Sum(wire.CodecRaw, []byte(fmt.Sprint(i))).Bytes()
	}
	manyB, _ := em.Marshal(map[int]any{1: 1, 2: root.Bytes(), 3: tooMany})
	badKind, _ := em.Marshal(map[int]any{1: 9, 2: root.Bytes()})
	badCID, _ := em.Marshal(map[int]any{1: 1, 2: root.Bytes(), 3: [][]byte{[]byte("not a cid")}})
	for _, tc := range []struct {
		name string
		raw  []byte
		want string // in the error response's message
	}{
		{"garbage", frame([]byte("hello, is this ftp?")), "decode request"},
		{"giant frame", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "frame of"},
		{"millions of chunks", frame(manyB), "decode request"},
		{"unknown kind", frame(badKind), "kind 9"},
		{"bad cid", frame(badCID), "cid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			str, err := attacker.NewStream(ctx, to, wire.Protocol)
			if err != nil {
				t.Fatal(err)
			}
			defer str.Reset()
			_ = str.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := str.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			r, err := wire.ReadResponse(bufio.NewReader(str), nil)
			if err != nil {
				t.Fatalf("no error response: %v", err)
			}
			if r.Kind != wire.KindError || !strings.Contains(r.Msg, tc.want) {
				t.Fatalf("response kind %d %q, want an error containing %q", r.Kind, r.Msg, tc.want)
			}
		})
	}
	t.Run("unknown cids", func(t *testing.T) {
		var cs []cid.Cid
		for i := 0; i < 10; i++ {
			cs = append(cs, wire.Sum(wire.CodecRaw, []byte{byte(i)}))
		}
		for _, r := range rawExchange(t, attacker, to, &wire.Request{Kind: wire.KindWant, Root: root, CIDs: cs}, 10) {
			if r.Kind != wire.KindNotFound {
				t.Fatalf("unknown cid answered with kind %d", r.Kind)
			}
		}
	})
	t.Run("floods without reading", func(t *testing.T) {
		// 1000 requests of 1024 wants each, never reading an answer: the
		// server stops reading once its queue is full, and stays up.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		str, err := attacker.NewStream(ctx, to, wire.Protocol)
		if err != nil {
			t.Fatal(err)
		}
		defer str.Reset()
		var blocks []cid.Cid
		for c := range blocksOf(t, srv, root) {
			blocks = append(blocks, c)
		}
		var cs []cid.Cid
		for len(cs) < wire.MaxWants {
			cs = append(cs, blocks...)
		}
		req, err := wire.EncodeRequest(&wire.Request{Kind: wire.KindWant, Root: root, CIDs: cs[:wire.MaxWants]})
		if err != nil {
			t.Fatal(err)
		}
		f := frame(req)
		_ = str.SetWriteDeadline(time.Now().Add(2 * time.Second))
		sent := 0
		for i := 0; i < 1000; i++ {
			if _, err := str.Write(f); err != nil {
				break // flow control pushed back: good
			}
			sent++
		}
		t.Logf("attacker got %d of 1000 requests out before flow control stopped it", sent)
		if sent == 1000 {
			t.Fatal("the server read a million wants without answering any")
		}
	})
	// The server still serves an honest peer.
	honest := newSvc(t, net.Peers[2], "")
	if _, err := honest.Fetch(ctxT(t, 20*time.Second), root, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := honest.Export(context.Background(), root, &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("honest fetch after attacks: %v", err)
	}
	_ = io.EOF
}

func TestCloseIsIdempotentAndStopsServing(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 1)
	s := newSvc(t, net.Peers[0], "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBytes(context.Background(), []byte("x")); err != ErrClosed {
		t.Fatalf("AddBytes after Close: %v, want ErrClosed", err)
	}
}

func TestOptionsRejectBadValues(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 1)
	for _, tc := range []struct {
		name string
		o    Option
		want string
	}{
		{"window", WithWindow(10), "window 10 bytes"},
		{"peers", WithMaxPeers(0), "max peers 0"},
		{"size", WithMaxFetchSize(-1), "max fetch size -1"},
		{"timeout", WithNoProviderTimeout(0), "timeout 0s"},
	} {
		_, err := New(context.Background(), net.Peers[0].Host, nil, t.TempDir(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(context.Background(), net.Peers[0].Host, nil, ""); err == nil {
		t.Error("empty directory accepted")
	}
}
