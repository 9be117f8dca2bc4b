package descriptors

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/daitn/daitn/internal/p2ptest"
)

// TestLateJoinerCatchesUp: a node that starts after a descriptor was
// gossiped learns it from a neighbour's sync answer, long before any
// republish.
func TestLateJoinerCatchesUp(t *testing.T) {
	nw := p2ptest.New(t, 3, p2ptest.WithPubSub())
	early := &p2ptest.Net{Peers: nw.Peers[:2]}
	svcs := startAll(t, early)
	waitMesh(t, svcs)
	sd, err := svcs[1].Publish(context.Background(), sample(KindModel, "early-bird"))
	if err != nil {
		t.Fatal(err)
	}
	findsOnAll(t, svcs, 1, Query{Kind: KindModel}, FindOptions{UseGossip: true}, sd, 10*time.Second)
	late := startAll(t, &p2ptest.Net{Peers: nw.Peers[2:]})[0]
	p2ptest.Eventually(t, 10*time.Second, "late joiner has the descriptor", func() bool {
		got, err := late.Get(context.Background(), sd.Slot)
		return err == nil && got.ID == sd.ID
	})
	res, _ := late.Find(context.Background(), Query{Kind: KindModel}, FindOptions{UseGossip: true})
	if len(res) != 1 || !containsSource(res[0].Sources, SourceSync) {
		t.Fatalf("late joiner result %+v", res)
	}
}

func frame(b []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

func TestReadSyncAnswerRejects(t *testing.T) {
	_, good, cases := badInputs(t)
	var ok bytes.Buffer
	ok.Write(frame(good.Raw))
	ok.Write(frame(good.Raw))
	n, err := ReadSyncAnswer(&ok, time.Now(), func(*Signed) {})
	if err != nil || n != 2 {
		t.Fatalf("good answer: %d, %v", n, err)
	}
	for _, c := range cases {
		if errors.Is(c.wantErr, ErrExpired) {
			continue // skipped, not fatal: it may expire in flight
		}
		var b bytes.Buffer
		b.Write(frame(good.Raw))
		b.Write(frame(c.raw))
		b.Write(frame(good.Raw))
		n, err := ReadSyncAnswer(&b, time.Now(), func(*Signed) {})
		if err == nil || n != 1 {
			t.Errorf("%s: accepted %d, err %v", c.name, n, err)
		}
	}
	huge := binary.AppendUvarint(nil, MaxEnvelopeSize+1)
	if _, err := ReadSyncAnswer(bytes.NewReader(huge), time.Now(), func(*Signed) {}); !errors.Is(err, ErrOversized) {
		t.Fatalf("oversized frame: %v", err)
	}
	if _, err := ReadSyncAnswer(bytes.NewReader(frame(good.Raw)[:20]), time.Now(), func(*Signed) {}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated frame: %v", err)
	}
}

// FuzzReadSyncAnswer: everything delivered to the callback verifies on its
// own, and never more than the limit.
func FuzzReadSyncAnswer(f *testing.F) {
	priv := newKey(f)
	s, _ := Sign(priv, sample(KindModel, "fz"))
	f.Add(frame(s.Raw))
	f.Add(append(frame(s.Raw), frame(s.Raw[:10])...))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		count := 0
		n, err := ReadSyncAnswer(bytes.NewReader(b), time.Now(), func(sd *Signed) {
			count++
			if _, err := Open(sd.Raw); err != nil {
				t.Fatalf("delivered a descriptor that does not verify: %v", err)
			}
		})
		if n != count || n > MaxSyncDescriptors {
			t.Fatalf("n=%d count=%d", n, count)
		}
		if err != nil && !classified(err) && !errors.Is(err, ErrSyncLimit) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// TestAntiEntropy: a descriptor a node missed (dropped here from its cache,
// as if gossip had passed it by) comes back from a periodic resync, and a
// resync of what the node already has transfers nothing.
func TestAntiEntropy(t *testing.T) {
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	svcs := startAll(t, nw, WithResyncInterval(time.Second))
	waitMesh(t, svcs)
	ctx := context.Background()
	sd, err := svcs[1].Publish(ctx, sample(KindCompute, "missed"))
	if err != nil {
		t.Fatal(err)
	}
	findsOnAll(t, svcs, 1, Query{Kind: KindCompute}, FindOptions{UseGossip: true}, sd, 10*time.Second)
	// Up to date: a sync brings nothing new.
	before := svcs[0].Stats().Synced
	if err := svcs[0].syncFrom(ctx, nw.Peers[1].Host.ID()); err != nil {
		t.Fatal(err)
	}
	if got := svcs[0].Stats().Synced; got != before {
		t.Fatalf("sync of an up-to-date node transferred %d descriptors", got-before)
	}
	svcs[0].mu.Lock()
	delete(svcs[0].cache, sd.Slot)
	delete(svcs[0].byVer, sd.ID)
	svcs[0].mu.Unlock()
	p2ptest.Eventually(t, 10*time.Second, "missed descriptor restored by anti-entropy", func() bool {
		got, err := svcs[0].Get(ctx, sd.Slot)
		return err == nil && got.ID == sd.ID
	})
}

func TestReadDigestLimits(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, ErrMalformed},
		{"too many", binary.AppendUvarint(nil, MaxSyncDescriptors+1), ErrSyncLimit},
		{"slot too long", binary.AppendUvarint(binary.AppendUvarint(nil, 1), maxSlotBytes+1), ErrMalformed},
		{"truncated", append(binary.AppendUvarint(binary.AppendUvarint(nil, 1), 36), 1, 2, 3), ErrMalformed},
	} {
		if _, err := readDigest(bufio.NewReader(bytes.NewReader(c.b))); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
	var buf bytes.Buffer
	s, _ := Sign(newKey(t), sample(KindModel, "d"))
	if err := writeDigest(&buf, []*Signed{s}); err != nil {
		t.Fatal(err)
	}
	have, err := readDigest(bufio.NewReader(&buf))
	if err != nil || have[string(s.Slot.Bytes())] != s.Seq {
		t.Fatalf("digest round trip: %v, %v", have, err)
	}
}

// FuzzReadDigest: a sync request from a peer decodes within its limits or
// fails with a classified error.
func FuzzReadDigest(f *testing.F) {
	var buf bytes.Buffer
	s, _ := Sign(newKey(f), sample(KindModel, "d"))
	_ = writeDigest(&buf, []*Signed{s, s})
	f.Add(buf.Bytes())
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		have, err := readDigest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSyncLimit) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(have) > MaxSyncDescriptors {
			t.Fatalf("%d entries", len(have))
		}
		for slot := range have {
			if len(slot) == 0 || len(slot) > maxSlotBytes {
				t.Fatalf("slot of %d bytes accepted", len(slot))
			}
		}
	})
}
