package taskpool

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func fuzzKey(f *testing.F) (crypto.PrivKey, peer.ID) {
	k := newKey(f)
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// stable checks that a decoded value re-encodes to bytes that decode to
// the same encoding: canonical, lossless.
func stable(t *testing.T, v any, fresh func() any) {
	b1, err := encMode.Marshal(v)
	if err != nil {
		t.Fatalf("re-encode accepted value: %v", err)
	}
	w := fresh()
	if err := decMode.Unmarshal(b1, w); err != nil {
		t.Fatalf("decode re-encoded value: %v", err)
	}
	b2, _ := encMode.Marshal(w)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not stable:\n%x\n%x", b1, b2)
	}
}

func FuzzOpenPosting(f *testing.F) {
	k, id := fuzzKey(f)
	tk := validTask(id)
	env, _ := SealPosting(tk, k)
	f.Add(env)
	tk.Input = []byte("input")
	tk.Eligible = []string{id.String()}
	env, _ = SealPosting(tk, k)
	f.Add(env)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenPosting(data)
		if err != nil {
			return
		}
		if len(data) > MaxPostingBytes || len(got.Input) > MaxInlineInput {
			t.Fatalf("accepted over-limit posting")
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted invalid posting: %v", err)
		}
		stable(t, got, func() any { return new(Task) })
	})
}

func FuzzOpenBid(f *testing.F) {
	k, id := fuzzKey(f)
	env, _ := SealBid(&Bid{TaskID: "t1", Bidder: id.String(), Price: 2.5, ExpectedMs: 10, Load: 0.5, Credentials: []string{"c"}, Time: 1}, k)
	f.Add(env)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenBid(data)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil || got.Load < 0 || got.Load > 1 || got.Price < 0 {
			t.Fatalf("accepted invalid bid %+v: %v", got, err)
		}
		stable(t, got, func() any { return new(Bid) })
	})
}

func FuzzOpenAssignment(f *testing.F) {
	k, id := fuzzKey(f)
	env, _ := seal(assignmentRec{&Assignment{TaskID: "t1", Poster: id.String(), Agent: id.String(), Epoch: 3, LeaseUntil: 5, Time: 1}}, k)
	f.Add(env)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenAssignment(data)
		if err != nil {
			return
		}
		if got.Epoch == 0 {
			t.Fatal("accepted epoch 0")
		}
		stable(t, got, func() any { return new(Assignment) })
	})
}

func FuzzOpenResult(f *testing.F) {
	k, id := fuzzKey(f)
	env, _ := seal(resultRec{&Result{TaskID: "t1", Poster: id.String(), Agent: id.String(), Epoch: 1, OK: true, Output: []byte("out"), Time: 1}}, k)
	f.Add(env)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenResult(data, 1024)
		if err != nil {
			return
		}
		if len(got.Output) > 1024 || got.Epoch == 0 {
			t.Fatalf("accepted over-limit result")
		}
		stable(t, got, func() any { return new(Result) })
	})
}

// FuzzDomainSeparation: no byte string opens as two different kinds, so a
// signature for one kind is never accepted as another.
func FuzzDomainSeparation(f *testing.F) {
	k, id := fuzzKey(f)
	p, _ := SealPosting(validTask(id), k)
	b, _ := SealBid(&Bid{TaskID: "t1", Bidder: id.String(), Time: 1}, k)
	a, _ := seal(assignmentRec{&Assignment{TaskID: "t1", Poster: id.String(), Agent: id.String(), Epoch: 1}}, k)
	c, _ := seal(ackRec{&Ack{TaskID: "t1", Agent: id.String(), Epoch: 1}}, k)
	r, _ := seal(resultRec{&Result{TaskID: "t1", Poster: id.String(), Agent: id.String(), Epoch: 1}}, k)
	for _, s := range [][]byte{p, b, a, c, r} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		if _, err := OpenPosting(data); err == nil {
			n++
		}
		if _, err := OpenBid(data); err == nil {
			n++
		}
		if _, err := OpenAssignment(data); err == nil {
			n++
		}
		if _, err := OpenAck(data); err == nil {
			n++
		}
		if _, err := OpenResult(data, DefaultMaxResult); err == nil {
			n++
		}
		if n > 1 {
			t.Fatalf("%d kinds accept the same bytes", n)
		}
	})
}

// FuzzReadMsg: the stream framing never reads past its limit and what it
// accepts re-frames to the same message.
func FuzzReadMsg(f *testing.F) {
	var buf bytes.Buffer
	_ = writeMsg(&buf, &wireMsg{Op: opRenew, TaskID: "t1", Epoch: 2})
	f.Add(buf.Bytes())
	buf.Reset()
	_ = writeMsg(&buf, &wireMsg{Op: opReply, Code: codePending, Until: time.Now().UnixMilli()})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	const limit = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := readMsg(bufio.NewReader(bytes.NewReader(data)), limit)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeMsg(&out, m); err != nil {
			t.Fatal(err)
		}
		m2, err := readMsg(bufio.NewReader(&out), limit)
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if m2.Op != m.Op || m2.TaskID != m.TaskID || m2.Epoch != m.Epoch || m2.Code != m.Code || !bytes.Equal(m2.Env, m.Env) {
			t.Fatalf("round trip changed the message: %+v vs %+v", m, m2)
		}
		if len(m.Env) > limit {
			t.Fatal("accepted an envelope over the frame limit")
		}
	})
}
