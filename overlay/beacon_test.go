package overlay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func goodBeacon(now time.Time, other peer.ID) Beacon {
	return Beacon{Seq: 7, Issued: now.UnixMilli(), Expires: now.Add(30 * time.Second).UnixMilli(),
		Roles: []string{"data", "compute"}, Load: Load{CPU: 40, Queue: 2, Jobs: 1}, Free: Capacity{Slots: 3, Cores: 2},
		Reach: ReachPublic, Descriptors: []string{"bafkreia", "bafkreib"}, DescriptorCount: 2,
		RTTs: []RTTSample{{Peer: []byte(other), Micros: 1500}}}
}

func TestBeaconCheck(t *testing.T) {
	now := time.Now()
	_, self := newKey(t)
	_, other := newKey(t)
	cases := []struct {
		name    string
		mutate  func(b *Beacon)
		wantErr string // substring; "" means valid
		expired bool
	}{
		{"valid", func(b *Beacon) {}, "", false},
		{"negative queue", func(b *Beacon) { b.Load.Queue = -1 }, "load.queue=-1", false},
		{"cpu over 100", func(b *Beacon) { b.Load.CPU = 250 }, "load.cpu=250", false},
		{"negative free memory", func(b *Beacon) { b.Free.MemoryMB = -5 }, "free.memory_mb=-5", false},
		{"rtt of hours", func(b *Beacon) { b.RTTs[0].Micros = (3 * time.Hour).Microseconds() }, "rtts[0].rtt_us", false},
		{"zero rtt", func(b *Beacon) { b.RTTs[0].Micros = 0 }, "rtts[0].rtt_us=0", false},
		{"rtt to self", func(b *Beacon) { b.RTTs[0].Peer = []byte(self) }, "to itself", false},
		{"rtt bad peer", func(b *Beacon) { b.RTTs[0].Peer = []byte("nope") }, "rtts[0].peer", false},
		{"rtt twice", func(b *Beacon) { b.RTTs = append(b.RTTs, b.RTTs[0]) }, "listed twice", false},
		{"future issued", func(b *Beacon) {
			b.Issued = now.Add(time.Hour).UnixMilli()
			b.Expires = now.Add(2 * time.Hour).UnixMilli()
		}, "in the future", false},
		{"expires before issued", func(b *Beacon) { b.Expires = b.Issued - 1 }, "must be after issued", false},
		{"lifetime too long", func(b *Beacon) { b.Expires = b.Issued + (2 * time.Hour).Milliseconds() }, "exceeds the maximum", false},
		{"zero issued", func(b *Beacon) { b.Issued = 0 }, "issued=0", false},
		{"bad reach", func(b *Beacon) { b.Reach = "mars" }, `reach="mars"`, false},
		{"bad role", func(b *Beacon) { b.Roles = []string{"Data!"} }, `roles[0]="Data!"`, false},
		{"too many roles", func(b *Beacon) { b.Roles = make([]string, MaxRoles+1) }, "at most 16", false},
		{"too many rtts", func(b *Beacon) { b.RTTs = make([]RTTSample, MaxRTTs+1) }, "at most 16", false},
		{"too many ids", func(b *Beacon) {
			b.Descriptors = make([]string, MaxDescriptorIDs+1)
			b.DescriptorCount = 100
		}, "at most 64", false},
		{"count below listed", func(b *Beacon) { b.DescriptorCount = 1 }, "descriptor_count=1", false},
		{"unprintable id", func(b *Beacon) { b.Descriptors[0] = "a\x00b" }, "descriptors[0]", false},
		{"expired", func(b *Beacon) {
			b.Issued = now.Add(-time.Minute).UnixMilli()
			b.Expires = now.Add(-time.Second).UnixMilli()
		}, "expired", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := goodBeacon(now, other)
			c.mutate(&b)
			err := b.Check(self, now)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("valid beacon rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, c.wantErr)
			}
			if got := errors.Is(err, ErrExpired); got != c.expired {
				t.Fatalf("errors.Is(err, ErrExpired) = %v, want %v", got, c.expired)
			}
		})
	}
}

// otherRecord is a record of another domain, to check a signature made for
// one kind never opens as a beacon.
type otherRecord struct{ b []byte }

func (o *otherRecord) Domain() string                 { return "daitn-descriptor-data" }
func (o *otherRecord) Codec() []byte                  { return BeaconPayloadType }
func (o *otherRecord) MarshalRecord() ([]byte, error) { return o.b, nil }
func (o *otherRecord) UnmarshalRecord(b []byte) error { o.b = b; return nil }

func TestOpenBeacon(t *testing.T) {
	now := time.Now()
	key, id := newKey(t)
	_, other := newKey(t)
	b := goodBeacon(now, other)
	raw, err := SealBeacon(key, &b)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := OpenBeacon(raw, now)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if sb.From != id {
		t.Fatalf("from = %s, want %s", sb.From, id)
	}
	again, _ := SealBeacon(key, &sb.Beacon)
	sb2, err := OpenBeacon(again, now)
	if err != nil || sb2.Beacon.Seq != b.Seq || len(sb2.Beacon.RTTs) != 1 {
		t.Fatalf("round trip: %v %+v", err, sb2)
	}

	t.Run("tampered payload", func(t *testing.T) {
		env, err := record.UnmarshalEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Replace(raw, env.RawPayload, append(append([]byte(nil), env.RawPayload[:len(env.RawPayload)-1]...), env.RawPayload[len(env.RawPayload)-1]^1), 1)
		if _, err := OpenBeacon(bad, now); err == nil {
			t.Fatal("tampered beacon opened")
		}
	})
	t.Run("other domain", func(t *testing.T) {
		payload, _ := b.MarshalRecord()
		env, err := record.Seal(&otherRecord{b: payload}, key)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := env.Marshal()
		if _, err := OpenBeacon(data, now); err == nil {
			t.Fatal("envelope of another domain opened as a beacon")
		}
	})
	t.Run("oversized", func(t *testing.T) {
		_, err := OpenBeacon(make([]byte, MaxBeaconBytes+1), now)
		if !errors.Is(err, ErrOversized) {
			t.Fatalf("err = %v, want ErrOversized", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		if _, err := OpenBeacon([]byte("hello"), now); err == nil {
			t.Fatal("garbage opened")
		}
	})
	t.Run("impossible values rejected on open", func(t *testing.T) {
		// Sealing does not validate (the sender may be hostile in tests);
		// opening must.
		bad := goodBeacon(now, other)
		bad.Load.Jobs = -3
		raw, err := SealBeacon(key, &bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenBeacon(raw, now); err == nil || !strings.Contains(err.Error(), "load.jobs=-3") {
			t.Fatalf("err = %v, want load.jobs named", err)
		}
	})
}

func TestBeaconSizeBound(t *testing.T) {
	// A beacon with every list at its cap must fit MaxBeaconBytes.
	now := time.Now()
	key, _ := newKey(t)
	b := Beacon{Seq: ^uint64(0), Issued: now.UnixMilli(), Expires: now.Add(MaxTTL).UnixMilli(), Reach: ReachPrivate, Relayed: true,
		Load: Load{CPU: 100, Queue: 1 << 30, Jobs: 1 << 30, Queries: 1 << 30},
		Free: Capacity{Slots: 1 << 30, Cores: 1 << 30, MemoryMB: 1 << 30, DiskMB: 1 << 30}, DescriptorCount: 1 << 30}
	for i := 0; i < MaxRoles; i++ {
		b.Roles = append(b.Roles, strings.Repeat("r", maxRoleLen-2)+string(rune('a'+i%26))+"x")
	}
	for i := 0; i < MaxDescriptorIDs; i++ {
		b.Descriptors = append(b.Descriptors, strings.Repeat("b", 59)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	for i := 0; i < MaxRTTs; i++ {
		_, p := newKey(t)
		b.RTTs = append(b.RTTs, RTTSample{Peer: []byte(p), Micros: MaxRTT.Microseconds()})
	}
	raw, err := SealBeacon(key, &b)
	if err != nil {
		t.Fatalf("full beacon does not seal: %v", err)
	}
	if _, err := OpenBeacon(raw, now); err != nil {
		t.Fatalf("full beacon does not open: %v", err)
	}
	t.Logf("beacon with every list at its cap: %d bytes (limit %d)", len(raw), MaxBeaconBytes)
}

// FuzzOpenBeacon: whatever opens must be a valid beacon that re-encodes to
// the same payload (deterministic CBOR) and is signed by the reported peer.
func FuzzOpenBeacon(f *testing.F) {
	now := time.UnixMilli(1_800_000_000_000)
	key, _ := newKey(f)
	_, other := newKey(f)
	b := goodBeacon(now, other)
	raw, _ := SealBeacon(key, &b)
	f.Add(raw)
	f.Add([]byte{})
	f.Add(raw[:len(raw)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		sb, err := OpenBeacon(data, now)
		if err != nil {
			if sb != nil {
				t.Fatal("error with a non-nil beacon")
			}
			return
		}
		if len(data) > MaxBeaconBytes {
			t.Fatalf("opened %d bytes, over the limit", len(data))
		}
		if err := sb.Beacon.Check(sb.From, now); err != nil {
			t.Fatalf("opened beacon fails its own check: %v", err)
		}
		env, err := record.UnmarshalEnvelope(data)
		if err != nil {
			t.Fatal(err)
		}
		signer, _ := peer.IDFromPublicKey(env.PublicKey)
		if signer != sb.From {
			t.Fatalf("from %s, signer %s", sb.From, signer)
		}
		var again Beacon
		if err := again.UnmarshalRecord(env.RawPayload); err != nil {
			t.Fatal(err)
		}
		p1, _ := sb.Beacon.MarshalRecord()
		p2, _ := again.MarshalRecord()
		if !bytes.Equal(p1, p2) {
			t.Fatal("re-encoding is not stable")
		}
	})
}

// FuzzBeaconPayload targets the CBOR decoder and the value checks directly
// (no signature in the way): decode -> encode -> decode is stable, and Check
// never panics and is deterministic.
func FuzzBeaconPayload(f *testing.F) {
	now := time.UnixMilli(1_800_000_000_000)
	_, other := newKey(f)
	b := goodBeacon(now, other)
	p, _ := b.MarshalRecord()
	f.Add(p)
	f.Add([]byte{0xa0})
	f.Add([]byte{0xbf, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Beacon
		if err := b.UnmarshalRecord(data); err != nil {
			return
		}
		e1, err := b.MarshalRecord()
		if err != nil {
			t.Fatalf("decoded beacon does not encode: %v", err)
		}
		var b2 Beacon
		if err := b2.UnmarshalRecord(e1); err != nil {
			t.Fatalf("re-encoded beacon does not decode: %v", err)
		}
		e2, _ := b2.MarshalRecord()
		if !bytes.Equal(e1, e2) {
			t.Fatal("encoding not stable")
		}
		err1 := b.Check(other, now)
		err2 := b2.Check(other, now)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("check differs after round trip: %v vs %v", err1, err2)
		}
	})
}
