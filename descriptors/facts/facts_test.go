package facts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors/sketch"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFormats(t *testing.T) {
	dir := t.TempDir()
	// ImageFolder: label subfolders; a hidden file is not a sample.
	img := filepath.Join(dir, "img")
	write(t, filepath.Join(img, "cat", "1.png"), "c1")
	write(t, filepath.Join(img, "cat", "2.png"), "c2")
	write(t, filepath.Join(img, "dog", "1.png"), "d1")
	write(t, filepath.Join(img, "dog", ".DS_Store"), "x")
	write(t, filepath.Join(dir, "t.csv"), "a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
	write(t, filepath.Join(dir, "t.jsonl"), `{"text":"hi","label":"pos"}`+"\n\n"+`{"text":"bye","label":"neg"}`+"\n"+`{"label":3,"text":"num"}`+"\n")
	cases := []struct {
		path, format string
		o            Options
		samples      int64
		dist         map[string]int64
	}{
		{img, FormatImageFolder, Options{}, 3, map[string]int64{"cat": 2, "dog": 1}},
		{filepath.Join(dir, "t.csv"), FormatCSV, Options{}, 3, map[string]int64{"x": 2, "y": 1}},
		{filepath.Join(dir, "t.jsonl"), FormatJSONL, Options{}, 3, map[string]int64{"pos": 1, "neg": 1, "3": 1}},
		{filepath.Join(dir, "t.csv"), FormatCSV, Options{LabelColumn: "a"}, 3, map[string]int64{"1": 1, "3": 1, "5": 1}},
	}
	for _, c := range cases {
		t.Run(c.format+"/"+c.o.LabelColumn, func(t *testing.T) {
			f, err := Compute(c.path, c.o)
			if err != nil {
				t.Fatal(err)
			}
			if f.Format != c.format || f.Samples != c.samples || f.SizeBytes <= 0 || f.Updated.IsZero() {
				t.Fatalf("facts %+v", f)
			}
			for k, v := range c.dist {
				if f.LabelDist[k] != v {
					t.Fatalf("label %q: %d, want %d (%v)", k, f.LabelDist[k], v, f.LabelDist)
				}
			}
			if len(f.LabelDist) != len(c.dist) {
				t.Fatalf("labels %v, want %v", f.LabelDist, c.dist)
			}
		})
	}
}

// TestMNIST measures the real MNIST test set and two halves of it: counts
// match the file, and the sketches see the overlap.
func TestMNIST(t *testing.T) {
	dir, err := dataset.MNISTDir()
	if err != nil {
		t.Skip("MNIST files not available:", err)
	}
	tmp := t.TempDir()
	for _, n := range []string{"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(tmp, n), string(b))
	}
	f, err := Compute(tmp, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Format != FormatMNIST || f.Samples != 10000 || f.Rows != 28 || f.Cols != 28 || f.LabelDist["1"] != 1135 || f.LabelDist["5"] != 892 {
		t.Fatalf("mnist facts: format %s samples %d %dx%d dist %v", f.Format, f.Samples, f.Rows, f.Cols, f.LabelDist)
	}
	// Two overlapping shards: samples 0..2999 and 2000..4999 share 1000 of
	// 5000 distinct ones, Jaccard 0.2.
	set, err := dataset.ReadSet(tmp, dataset.TestPrefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	shard := func(name string, from, to int) string {
		idx := make([]int, 0, to-from)
		for i := from; i < to; i++ {
			idx = append(idx, i)
		}
		d := filepath.Join(tmp, name)
		if err := dataset.WriteDir(d, set.Subset(idx)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, err := Compute(shard("a", 0, 3000), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compute(shard("b", 2000, 5000), Options{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := sketch.Jaccard(a.Sketch, b.Sketch)
	if err != nil {
		t.Fatal(err)
	}
	// MNIST has a few duplicate images, so allow the estimator's ±0.05.
	if j < 0.15 || j > 0.25 {
		t.Fatalf("estimated overlap of the shards %.3f, want 0.2±0.05", j)
	}
}

func TestComputeErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "nolabel.csv"), "a,b\n1,2\n")
	write(t, filepath.Join(dir, "bad.jsonl"), "{\"label\":1}\nnot json\n")
	write(t, filepath.Join(dir, "empty", "x.txt"), "")
	write(t, filepath.Join(dir, "idx", "train-images-idx3-ubyte"), "garbage")
	write(t, filepath.Join(dir, "idx", "train-labels-idx1-ubyte"), "garbage")
	for _, c := range []struct {
		path string
		o    Options
		err  error
		want string
	}{
		{filepath.Join(dir, "missing"), Options{}, os.ErrNotExist, "missing"},
		{filepath.Join(dir, "nolabel.csv"), Options{}, ErrFormat, `no label column "label"`},
		{filepath.Join(dir, "bad.jsonl"), Options{}, ErrFormat, "line 2"},
		{filepath.Join(dir, "empty"), Options{}, ErrUnsupported, "no idx files"},
		{filepath.Join(dir, "idx"), Options{}, ErrFormat, "idx"},
		{filepath.Join(dir, "nolabel.csv"), Options{Format: "parquet"}, ErrUnsupported, "parquet"},
	} {
		_, err := Compute(c.path, c.o)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compute(%s): %v, want %v naming %q", c.path, err, c.err, c.want)
		}
	}
}

func TestFingerprintChanges(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a", "1"), "x")
	f1, err := Fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "a", "2"), "y")
	f2, _ := Fingerprint(dir)
	if f1 == f2 {
		t.Fatal("fingerprint did not change when a file was added")
	}
}
