package train

import (
	"crypto/rand"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Invariant: whatever a decoder accepts is valid and re-encodes to bytes
// that decode to the same value.

func FuzzRoundTask(f *testing.F) {
	b, _ := MarshalRoundTask(&RoundTask{Job: "j", Round: 3, Arch: "mnist-2nn", Model: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Dataset: "d", Epochs: 1, Batch: 10, LR: 0.1, Seed: 9, MaxSamples: 5})
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, in []byte) {
		rt, err := UnmarshalRoundTask(in)
		if err != nil {
			return
		}
		if err := rt.Validate(); err != nil {
			t.Fatalf("accepted an invalid task: %v", err)
		}
		out, err := MarshalRoundTask(rt)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := UnmarshalRoundTask(out)
		if err != nil || !reflect.DeepEqual(rt, again) {
			t.Fatalf("round trip: %v %+v %+v", err, rt, again)
		}
	})
}

func FuzzRoundResult(f *testing.F) {
	b, _ := MarshalRoundResult(&RoundResult{Update: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Samples: 600, Loss: 0.2, TrainMs: 5, FetchMs: 1, FetchedBytes: 10})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := UnmarshalRoundResult(in)
		if err != nil {
			return
		}
		if r.Samples < 1 || r.Loss < 0 {
			t.Fatalf("accepted an invalid result %+v", r)
		}
		out, err := MarshalRoundResult(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := UnmarshalRoundResult(out)
		if err != nil || !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzEvalRequest(f *testing.F) {
	b, _ := encMode.Marshal(&EvalRequest{Model: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Arch: "mnist-2nn", Task: "t", Nonce: []byte("0123456789")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := UnmarshalEvalRequest(in)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid request: %v", err)
		}
	})
}

func FuzzEvalReport(f *testing.F) {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(k)
	b, err := SealEvalReport(&EvalReport{Model: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Arch: "mnist-2nn", Testset: "t",
		Accuracy: 0.9, Loss: 0.3, Samples: 10, Time: time.Now().UnixMilli(), Evaluator: id.String(), Nonce: []byte("0123456789")}, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := OpenEvalReport(in)
		if err != nil {
			return
		}
		// Anything accepted is signed by the evaluator it names.
		if _, err := VerifyReportSigner(in, peer.ID(mustDecode(t, r.Evaluator))); err != nil {
			t.Fatalf("accepted report fails signer check: %v", err)
		}
		if !(r.Accuracy >= 0 && r.Accuracy <= 1) {
			t.Fatalf("accepted accuracy %v", r.Accuracy)
		}
	})
}

func mustDecode(t *testing.T, s string) peer.ID {
	p, err := peer.Decode(s)
	if err != nil {
		t.Fatalf("accepted evaluator %q: %v", s, err)
	}
	return p
}

func FuzzJobSpec(f *testing.F) {
	f.Add([]byte(goodJob), false)
	f.Add([]byte(`{"model":{"arch":"mnist-2nn"},"target":{"accuracy":0.9},"data":{"task":"x"}}`), true)
	f.Fuzz(func(t *testing.T, in []byte, isJSON bool) {
		var s *JobSpec
		var err error
		if isJSON {
			s, err = ParseJobJSON(in)
		} else {
			s, err = ParseJobTOML(in)
		}
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid spec: %v", err)
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseJobJSON(js)
		if err != nil {
			t.Fatalf("re-parse of accepted spec: %v\n%s", err, js)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip changed the spec:\n%+v\n%+v", s, again)
		}
	})
}
