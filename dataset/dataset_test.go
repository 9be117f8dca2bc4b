package dataset

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mnistOnce         sync.Once
	mnistTrain, mnist *Set
	mnistErr          error
)

func loadMNIST(t testing.TB) (train, test *Set) {
	t.Helper()
	mnistOnce.Do(func() {
		dir, err := MNISTDir()
		if err != nil {
			mnistErr = err
			return
		}
		if testing.Short() || raceEnabled {
			// Decoding all 60,000 training images under -race costs tens of
			// seconds on a busy CI machine; short tests use the first 10,000.
			if mnistTrain, mnistErr = ReadSetHead(dir, TrainPrefix, 10000); mnistErr == nil {
				mnist, mnistErr = ReadSet(dir, TestPrefix, 0)
			}
			return
		}
		mnistTrain, mnist, mnistErr = LoadMNIST(dir)
	})
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	return mnistTrain, mnist
}

func TestLoadMNIST(t *testing.T) {
	train, test := loadMNIST(t)
	want := 60000
	if testing.Short() || raceEnabled {
		want = 10000
	}
	if train.Len() != want || test.Len() != 10000 {
		t.Fatalf("got %d train and %d test samples, want %d and 10000", train.Len(), test.Len(), want)
	}
	if train.Rows != 28 || train.Cols != 28 || len(train.X) != want*784 {
		t.Fatalf("train shape %dx%d, %d features", train.Rows, train.Cols, len(train.X))
	}
	// The first training digit of MNIST is a 5, the first test digit a 7.
	if train.Y[0] != 5 || test.Y[0] != 7 {
		t.Fatalf("first labels %d and %d, want 5 and 7", train.Y[0], test.Y[0])
	}
	for i := 0; i < len(train.X); i += 97 { // a sample of pixels keeps -race fast
		if x := train.X[i]; x < 0 || x > 1 {
			t.Fatalf("pixel %v outside [0,1]", x)
		}
	}
	c := train.LabelCounts()
	total := 0
	for _, n := range c {
		if n < want/12 || n > want/8 {
			t.Fatalf("label counts %v look wrong", c)
		}
		total += n
	}
	if total != want {
		t.Fatalf("label counts sum to %d", total)
	}
}

func TestMNISTDirEnv(t *testing.T) {
	dir, err := MNISTDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(MNISTDirEnv, dir)
	if got, err := MNISTDir(); err != nil || got != dir {
		t.Fatalf("with $%s=%s got %q, %v", MNISTDirEnv, dir, got, err)
	}
	empty := t.TempDir()
	t.Setenv(MNISTDirEnv, empty)
	if _, err := MNISTDir(); err == nil || !strings.Contains(err.Error(), empty) {
		t.Fatalf("empty dir: want an error naming %s, got %v", empty, err)
	}
}

func TestShardIID(t *testing.T) {
	train, _ := loadMNIST(t)
	n := train.Len() / 600 // the paper's 100 clients × 600 on the full set
	for k := 0; k < n; k += 7 {
		a, err := ShardIID(train, k, n, 1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ShardIID(train, k, n, 1)
		if a.Len() != train.Len()/n || !bytes.Equal(a.Y, b.Y) || !equalF(a.X, b.X) {
			t.Fatalf("shard %d: len %d, not deterministic", k, a.Len())
		}
		c := a.LabelCounts()
		for l, m := range c {
			if m < 25 { // expectation 60, IID
				t.Fatalf("iid shard %d has only %d samples of %d: %v", k, m, l, c)
			}
		}
	}
	other, _ := ShardIID(train, 0, n, 2)
	first, _ := ShardIID(train, 0, n, 1)
	if bytes.Equal(other.Y, first.Y) && equalF(other.X, first.X) {
		t.Fatal("different seeds gave the same shard")
	}
}

func TestShardsDisjoint(t *testing.T) {
	// A small synthetic set where every sample is unique by construction.
	s := synthetic(1000)
	for _, tc := range []struct {
		name  string
		shard func(*Set, int, int, uint64) (*Set, error)
	}{{"iid", ShardIID}, {"noniid", ShardNonIID}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 10
			seen := make(map[float32]bool)
			for k := 0; k < n; k++ {
				sh, err := tc.shard(s, k, n, 42)
				if err != nil {
					t.Fatal(err)
				}
				if sh.Len() != 100 {
					t.Fatalf("shard %d has %d samples", k, sh.Len())
				}
				for i := 0; i < sh.Len(); i++ {
					id := sh.X[i*sh.Dim()]
					if seen[id] {
						t.Fatalf("sample %v in two shards", id)
					}
					seen[id] = true
					if sh.Y[i] != s.Y[int(id)] {
						t.Fatalf("label of sample %v changed", id)
					}
				}
			}
			if len(seen) != 1000 {
				t.Fatalf("shards cover %d of 1000 samples", len(seen))
			}
		})
	}
}

func TestShardNonIID(t *testing.T) {
	train, _ := loadMNIST(t)
	const n = 100 // 600 samples per shard on the full set, 100 on the short tests' head
	twoClass := 0
	for k := 0; k < n; k++ {
		sh, err := ShardNonIID(train, k, n, 7)
		if err != nil {
			t.Fatal(err)
		}
		if sh.Len() != train.Len()/(2*n)*2 {
			t.Fatalf("shard %d has %d samples", k, sh.Len())
		}
		classes := 0
		for _, m := range sh.LabelCounts() {
			if m > 0 {
				classes++
			}
		}
		if classes > 4 {
			t.Fatalf("non-iid shard %d has %d classes: %v", k, classes, sh.LabelCounts())
		}
		if classes <= 2 {
			twoClass++
		}
	}
	if twoClass < n*7/10 {
		t.Fatalf("only %d of %d non-iid shards hold at most two digits", twoClass, n)
	}
}

func TestShardErrors(t *testing.T) {
	s := synthetic(10)
	for _, tc := range []struct {
		k, n int
		want string
	}{
		{0, 0, "n=0"},
		{-1, 5, "k=-1"},
		{5, 5, "k=5"},
		{0, 11, "cannot be split"},
	} {
		if _, err := ShardIID(s, tc.k, tc.n, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ShardIID(k=%d,n=%d): got %v, want error containing %q", tc.k, tc.n, err, tc.want)
		}
	}
	if _, err := ShardNonIID(s, 0, 6, 1); err == nil || !strings.Contains(err.Error(), "12 parts") {
		t.Errorf("ShardNonIID n=6 of 10 samples: got %v", err)
	}
}

func TestWriteReadDir(t *testing.T) {
	train, _ := loadMNIST(t)
	sh, err := ShardNonIID(train, 3, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "shard")
	if err := WriteDir(dir, sh); err != nil {
		t.Fatal(err)
	}
	back, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Y, sh.Y) || !equalF(back.X, sh.X) || back.Rows != 28 {
		t.Fatal("shard changed after a write/read round trip")
	}
	// Overwrite in place with another set.
	sh2 := synthetic(5)
	if err := WriteDir(dir, sh2); err != nil {
		t.Fatal(err)
	}
	back, err = ReadDir(dir)
	if err != nil || back.Len() != 5 {
		t.Fatalf("after overwrite: %v, %d samples", err, back.Len())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("data dir holds %d entries, want exactly the two idx files", len(ents))
	}
}

func TestReadDirErrors(t *testing.T) {
	im := &Images{N: 2, Rows: 2, Cols: 2, Pix: []byte{0, 1, 2, 3, 4, 5, 6, 255}}
	write := func(dir, name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	labels := func(l ...byte) []byte {
		var b bytes.Buffer
		_ = WriteIDXLabels(&b, l)
		return b.Bytes()
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"empty", nil, "no images file"},
		{"no labels", map[string][]byte{"train-images-idx3-ubyte": encodeIDXImages(im)}, "no labels file"},
		{"count mismatch", map[string][]byte{"train-images-idx3-ubyte": encodeIDXImages(im), "train-labels-idx1-ubyte": labels(1)}, "2 images but 1 labels"},
		{"bad label", map[string][]byte{"train-images-idx3-ubyte": encodeIDXImages(im), "train-labels-idx1-ubyte": labels(1, 12)}, "sample 1 is 12"},
		{"ambiguous", map[string][]byte{"train-images-idx3-ubyte": encodeIDXImages(im), "train-images-idx3-ubyte.gz": gz(encodeIDXImages(im)), "train-labels-idx1-ubyte": labels(1, 2)}, "ambiguous images"},
		{"swapped", map[string][]byte{"train-images-idx3-ubyte": labels(1, 2), "train-labels-idx1-ubyte": labels(1, 2)}, "magic 0x00000801"},
		{"ok plain+gz", map[string][]byte{"train-images-idx3-ubyte": encodeIDXImages(im), "train-labels-idx1-ubyte.gz": gz(labels(1, 2))}, ""},
		{"ok dotted", map[string][]byte{"train-images.idx3-ubyte": encodeIDXImages(im), "train-labels.idx1-ubyte": labels(1, 2)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tc.files {
				write(dir, name, b)
			}
			s, err := ReadDir(dir)
			if tc.want == "" {
				if err != nil || s.Len() != 2 || s.X[7] != 1 {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestReadIDXErrors(t *testing.T) {
	good := encodeIDXImages(&Images{N: 3, Rows: 2, Cols: 3, Pix: make([]byte, 18)})
	mk := func(magic, n, r, c uint32) []byte {
		b := []byte{byte(magic >> 24), byte(magic >> 16), byte(magic >> 8), byte(magic),
			byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n),
			byte(r >> 24), byte(r >> 16), byte(r >> 8), byte(r),
			byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)}
		return b
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		limit int
		want  string
	}{
		{"empty", nil, 0, "need 16 bytes"},
		{"short header", good[:10], 0, "need 16 bytes"},
		{"magic", mk(0x0803_0000, 1, 1, 1), 0, "magic"},
		{"too many", mk(imagesMagic, 4, 2, 3), 3, "announces 4 images, limit is 3"},
		{"huge count", mk(imagesMagic, 1<<31, 28, 28), 0, "limit is"},
		{"zero side", mk(imagesMagic, 1, 0, 28), 0, "image size 0x28"},
		{"huge side", mk(imagesMagic, 1, 28, 5000), 0, "image size 28x5000"},
		{"too many bytes", mk(imagesMagic, 1<<20, 1024, 1024), 0, "bytes, limit is"},
		{"truncated", good[:len(good)-1], 0, "truncated"},
		{"trailing", append(append([]byte(nil), good...), 0), 0, "trailing data"},
		{"negative limit", good, -1, "item limit -1"},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0}, 0, "gzip"},
		{"truncated gzip", gz(good)[:20], 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadIDXImages(bytes.NewReader(tc.in), tc.limit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if tc.limit >= 0 && !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
		})
	}
	if im, err := ReadIDXImages(bytes.NewReader(gz(good)), 3); err != nil || im.N != 3 {
		t.Fatalf("gzip at the limit: %v", err)
	}
	if _, err := ReadIDXLabels(bytes.NewReader([]byte{0, 0, 8, 1, 0, 0, 0, 9, 1}), 0); err == nil || !strings.Contains(err.Error(), "announces 9 labels, got 1") {
		t.Fatalf("truncated labels: %v", err)
	}
}

func TestImagesRoundTrip(t *testing.T) {
	im := &Images{N: 2, Rows: 1, Cols: 256, Pix: make([]byte, 512)}
	for i := range im.Pix {
		im.Pix[i] = byte(i)
	}
	s, err := NewSet(im, []byte{3, 9})
	if err != nil {
		t.Fatal(err)
	}
	back, labels := s.Images()
	if !bytes.Equal(back.Pix, im.Pix) || !bytes.Equal(labels, []byte{3, 9}) {
		t.Fatal("pixels did not round-trip through float32")
	}
	if !bytes.Equal(im.Sample(1), im.Pix[256:]) {
		t.Fatal("Sample(1)")
	}
}

// FuzzReadIDXImages checks that any accepted input is a consistent image set
// whose re-encoding decodes to the same thing, and that a plain input is
// accepted exactly when it is the canonical encoding of what it decodes to.
func FuzzReadIDXImages(f *testing.F) {
	f.Add(encodeIDXImages(&Images{N: 2, Rows: 2, Cols: 2, Pix: []byte{1, 2, 3, 4, 5, 6, 7, 8}}))
	f.Add(gz(encodeIDXImages(&Images{N: 1, Rows: 1, Cols: 3, Pix: []byte{9, 8, 7}})))
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		im, err := ReadIDXImages(bytes.NewReader(in), 1000)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if im.N > 1000 || im.Rows < 1 || im.Cols < 1 || im.Rows > MaxSide || im.Cols > MaxSide || len(im.Pix) != im.N*im.Rows*im.Cols {
			t.Fatalf("accepted inconsistent images: %d of %dx%d, %d bytes", im.N, im.Rows, im.Cols, len(im.Pix))
		}
		enc := encodeIDXImages(im)
		if len(in) >= 2 && !(in[0] == 0x1f && in[1] == 0x8b) && !bytes.Equal(enc, in) {
			t.Fatalf("plain input accepted but is not canonical")
		}
		again, err := ReadIDXImages(bytes.NewReader(enc), 1000)
		if err != nil || !bytes.Equal(again.Pix, im.Pix) || again.Rows != im.Rows {
			t.Fatalf("re-encoding does not decode back: %v", err)
		}
		// A head of any size is a prefix of the whole.
		for _, h := range []int{1, im.N/2 + 1, im.N + 5} {
			head, err := ReadIDXImagesHead(bytes.NewReader(in), h)
			if err != nil || head.N != min(h, im.N) || !bytes.Equal(head.Pix, im.Pix[:len(head.Pix)]) {
				t.Fatalf("head %d of an accepted file: %v", h, err)
			}
		}
	})
}

// FuzzReadIDXLabels: accepted input has exactly the announced labels and
// re-encodes canonically.
func FuzzReadIDXLabels(f *testing.F) {
	f.Add([]byte{0, 0, 8, 1, 0, 0, 0, 2, 3, 4})
	f.Add(gz([]byte{0, 0, 8, 1, 0, 0, 0, 1, 9}))
	f.Fuzz(func(t *testing.T, in []byte) {
		l, err := ReadIDXLabels(bytes.NewReader(in), 1000)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(l) > 1000 {
			t.Fatalf("accepted %d labels over the limit", len(l))
		}
		var b bytes.Buffer
		_ = WriteIDXLabels(&b, l)
		if len(in) >= 2 && !(in[0] == 0x1f && in[1] == 0x8b) && !bytes.Equal(b.Bytes(), in) {
			t.Fatal("plain input accepted but is not canonical")
		}
	})
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// synthetic builds n samples of 2×2 whose first pixel encodes the index
// (unique) and labels cycling over the digits.
func synthetic(n int) *Set {
	s := &Set{X: make([]float32, n*4), Y: make([]uint8, n), Rows: 2, Cols: 2}
	for i := 0; i < n; i++ {
		s.X[i*4] = float32(i)
		s.Y[i] = uint8(i * 7 % Classes)
	}
	return s
}

func equalF(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMNISTShardAndFingerprint(t *testing.T) {
	train, _ := loadMNIST(t)
	a, _ := ShardNonIID(train, 4, 10, 3)
	if !testing.Short() && !raceEnabled { // MNISTShard decodes all of MNIST again: slow under -race
		b, err := MNISTShard(4, 10, true, 3)
		if err != nil {
			t.Fatal(err)
		}
		if a.Fingerprint() != b.Fingerprint() {
			t.Fatal("MNISTShard differs from ShardNonIID on the loaded set")
		}
	}
	c, _ := ShardNonIID(train, 5, 10, 3)
	if a.Fingerprint() == c.Fingerprint() {
		t.Fatal("two different shards share a fingerprint")
	}
	dir := t.TempDir()
	if err := WriteDir(dir, a); err != nil {
		t.Fatal(err)
	}
	back, _ := ReadDir(dir)
	if back.Fingerprint() != a.Fingerprint() {
		t.Fatal("fingerprint changed through a data directory")
	}
	if _, err := ShardIID(train, 10, 10, 1); err == nil || !strings.Contains(err.Error(), "k=10") {
		t.Fatalf("shard 10 of 10: %v", err)
	}
}

func BenchmarkLoadMNIST(b *testing.B) {
	dir, err := MNISTDir()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := LoadMNIST(dir); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReadSetHead(t *testing.T) {
	dir, err := MNISTDir()
	if err != nil {
		t.Fatal(err)
	}
	_, test := loadMNIST(t)
	head, err := ReadSetHead(dir, TestPrefix, 123)
	if err != nil {
		t.Fatal(err)
	}
	if head.Len() != 123 || !bytes.Equal(head.Y, test.Y[:123]) || !equalF(head.X, test.X[:123*784]) {
		t.Fatal("head differs from the first samples of the full set")
	}
	all, err := ReadSetHead(dir, TestPrefix, 20000)
	if err != nil || all.Len() != 10000 {
		t.Fatalf("head larger than the set: %v, %d samples", err, all.Len())
	}
	if _, err := ReadSetHead(dir, TestPrefix, 0); err == nil || !strings.Contains(err.Error(), "head 0") {
		t.Fatalf("head 0: %v", err)
	}
	// A truncated file is still an error within the head.
	good := encodeIDXImages(&Images{N: 3, Rows: 2, Cols: 2, Pix: make([]byte, 12)})
	if _, err := ReadIDXImagesHead(bytes.NewReader(good[:len(good)-1]), 3); !errors.Is(err, ErrFormat) {
		t.Fatalf("truncated within head: %v", err)
	}
	if im, err := ReadIDXImagesHead(bytes.NewReader(good[:len(good)-4]), 2); err != nil || im.N != 2 {
		t.Fatalf("truncated after head: %v", err)
	}
}
