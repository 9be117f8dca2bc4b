package facts

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors/sketch"
)

// Formats Compute understands.
const (
	FormatImageFolder = "imagefolder"
	FormatCSV         = "csv"
	FormatJSONL       = "jsonl"
	FormatMNIST       = "mnist-idx"
)

// Limits that bound the work on a hostile or accidental input.
const (
	MaxLineBytes = 1 << 20  // one CSV record or JSONL line
	MaxLabels    = 4096     // distinct labels in a distribution
	MaxFiles     = 10 << 20 // files walked in one directory tree
)

// ErrUnsupported is wrapped when the path is not in a format we understand.
var ErrUnsupported = errors.New("unsupported data layout")

// ErrFormat is wrapped when the data claims a format but breaks its rules.
var ErrFormat = errors.New("malformed data")

// Options tune Compute.
type Options struct {
	Format      string // "" = detect; else one of the Format constants
	LabelColumn string // CSV/JSONL label column (default "label")
	SketchK     int    // default sketch.DefaultK
}

// Facts are what Compute measured.
type Facts struct {
	Format    string
	Samples   int64
	SizeBytes int64
	LabelDist map[string]int64
	Sketch    *sketch.MinHash
	Updated   time.Time // newest modification time among the files read
	Rows      int       // image height (mnist-idx), 0 otherwise
	Cols      int       // image width (mnist-idx), or CSV/JSONL feature count
	Columns   []string  // CSV header / JSONL keys (sorted), minus the label
}

// Compute reads the data at path and measures it.
func Compute(path string, o Options) (*Facts, error) {
	if o.LabelColumn == "" {
		o.LabelColumn = "label"
	}
	if o.SketchK == 0 {
		o.SketchK = sketch.DefaultK
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data facts: %w", err)
	}
	format := o.Format
	if format == "" {
		if format, err = Detect(path); err != nil {
			return nil, err
		}
	}
	sk, err := sketch.New(o.SketchK)
	if err != nil {
		return nil, fmt.Errorf("data facts: %w", err)
	}
	f := &Facts{Format: format, LabelDist: map[string]int64{}, Sketch: sk}
	switch format {
	case FormatImageFolder:
		if !st.IsDir() {
			return nil, fmt.Errorf("data facts %s: %w: imagefolder needs a directory", path, ErrUnsupported)
		}
		err = f.imageFolder(path)
	case FormatMNIST:
		err = f.mnist(path, st.IsDir())
	case FormatCSV, FormatJSONL:
		err = f.tabular(path, format, o.LabelColumn)
	default:
		return nil, fmt.Errorf("data facts %s: %w: format %q (want imagefolder, csv, jsonl or mnist-idx)", path, ErrUnsupported, format)
	}
	if err != nil {
		return nil, err
	}
	if len(f.LabelDist) > MaxLabels {
		return nil, fmt.Errorf("data facts %s: %w: %d distinct labels (limit %d); is %q really the label column?", path, ErrFormat, len(f.LabelDist), MaxLabels, o.LabelColumn)
	}
	return f, nil
}

// Detect guesses the format of path: a file by its extension or idx magic, a
// directory by its idx files, else by a majority of csv/jsonl files, else
// ImageFolder if it has label subdirectories.
func Detect(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("data facts: %w", err)
	}
	if !st.IsDir() {
		return detectFile(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "", fmt.Errorf("data facts: %w", err)
	}
	var csvN, jsonlN, dirs, idx int
	for _, e := range entries {
		n := strings.ToLower(e.Name())
		switch {
		case e.IsDir() && !strings.HasPrefix(n, "."):
			dirs++
		case strings.Contains(n, "idx3-ubyte") || strings.Contains(n, "idx3.ubyte"):
			idx++
		case strings.HasSuffix(n, ".csv"):
			csvN++
		case strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".ndjson"):
			jsonlN++
		}
	}
	switch {
	case idx > 0:
		return FormatMNIST, nil
	case csvN > 0 && csvN >= jsonlN:
		return FormatCSV, nil
	case jsonlN > 0:
		return FormatJSONL, nil
	case dirs > 0:
		return FormatImageFolder, nil
	}
	return "", fmt.Errorf("data facts %s: %w: no idx files, no .csv/.jsonl files and no label subdirectories (want an ImageFolder directory, CSV/JSONL with a label column, or MNIST idx files)", path, ErrUnsupported)
}

func detectFile(path string) (string, error) {
	n := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(n, ".csv"):
		return FormatCSV, nil
	case strings.HasSuffix(n, ".jsonl"), strings.HasSuffix(n, ".ndjson"):
		return FormatJSONL, nil
	case strings.Contains(n, "idx3"):
		return FormatMNIST, nil
	}
	return "", fmt.Errorf("data facts %s: %w: file is not .csv, .jsonl or an idx3 images file", path, ErrUnsupported)
}

func (f *Facts) touch(st fs.FileInfo) {
	f.SizeBytes += st.Size()
	if mt := st.ModTime().UTC(); mt.After(f.Updated) {
		f.Updated = mt
	}
}

// addSample hashes label and content together: two datasets share a sample
// only if both the bytes and the label agree.
func (f *Facts) addSample(label string, content []byte) {
	buf := make([]byte, 0, len(label)+1+len(content))
	buf = append(buf, label...)
	buf = append(buf, 0)
	buf = append(buf, content...)
	f.Sketch.Add(buf)
	f.Samples++
	f.LabelDist[label]++
}

func (f *Facts) imageFolder(root string) error {
	labels, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("data facts %s: %w", root, err)
	}
	files := 0
	for _, l := range labels {
		if !l.IsDir() || strings.HasPrefix(l.Name(), ".") {
			continue
		}
		dir := filepath.Join(root, l.Name())
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			if files++; files > MaxFiles {
				return fmt.Errorf("%w: more than %d files", ErrFormat, MaxFiles)
			}
			// Stat, not Lstat: sample files are often symlinks into a
			// shared pool, and a dangling one is an unreadable sample.
			st, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("sample %s: %w", p, err)
			}
			if !st.Mode().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.touch(st)
			f.addSample(l.Name(), b)
			return nil
		})
		if err != nil {
			return fmt.Errorf("data facts %s: %w", dir, err)
		}
	}
	if f.Samples == 0 {
		return fmt.Errorf("data facts %s: %w: imagefolder has no sample files in its label subdirectories", root, ErrFormat)
	}
	return nil
}

// mnist reads every images/labels pair (a directory) or one images file and
// its labels sibling.
func (f *Facts) mnist(path string, isDir bool) error {
	var images []string
	if isDir {
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("data facts %s: %w", path, err)
		}
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && (strings.Contains(n, "idx3-ubyte") || strings.Contains(n, "idx3.ubyte")) {
				images = append(images, filepath.Join(path, n))
			}
		}
		sort.Strings(images)
	} else {
		images = []string{path}
	}
	if len(images) == 0 {
		return fmt.Errorf("data facts %s: %w: no *-images-idx3-ubyte[.gz] file", path, ErrFormat)
	}
	for _, ip := range images {
		lp := strings.Replace(strings.Replace(ip, "images", "labels", 1), "idx3", "idx1", 1)
		if err := f.mnistPair(ip, lp); err != nil {
			return err
		}
	}
	return nil
}

func (f *Facts) mnistPair(imgPath, lblPath string) error {
	ist, err := os.Stat(imgPath)
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	lst, err := os.Stat(lblPath)
	if err != nil {
		return fmt.Errorf("data facts %s: labels file: %w", imgPath, err)
	}
	r, err := os.Open(imgPath)
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	im, err := dataset.ReadIDXImages(r, 0)
	r.Close()
	if err != nil {
		return fmt.Errorf("data facts %s: %w: %v", imgPath, ErrFormat, err)
	}
	r, err = os.Open(lblPath)
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	labels, err := dataset.ReadIDXLabels(r, 0)
	r.Close()
	if err != nil {
		return fmt.Errorf("data facts %s: %w: %v", lblPath, ErrFormat, err)
	}
	if len(labels) != im.N {
		return fmt.Errorf("data facts %s: %w: %d images but %d labels in %s", imgPath, ErrFormat, im.N, len(labels), lblPath)
	}
	f.touch(ist)
	f.touch(lst)
	f.Rows, f.Cols = im.Rows, im.Cols
	for i := 0; i < im.N; i++ {
		f.addSample(strconv.Itoa(int(labels[i])), im.Sample(i))
	}
	return nil
}

func (f *Facts) tabular(path, format, labelCol string) error {
	var files []string
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("data facts %s: %w", path, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			if g, err := detectFile(filepath.Join(path, e.Name())); err == nil && g == format {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
	} else {
		files = []string{path}
	}
	for _, p := range files {
		var err error
		if format == FormatCSV {
			err = f.csvFile(p, labelCol)
		} else {
			err = f.jsonlFile(p, labelCol)
		}
		if err != nil {
			return err
		}
	}
	if f.Samples == 0 {
		return fmt.Errorf("data facts %s: %w: no samples", path, ErrFormat)
	}
	return nil
}

func (f *Facts) csvFile(p, labelCol string) error {
	fh, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	r := csv.NewReader(bufio.NewReader(io.LimitReader(fh, st.Size())))
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("data facts %s: %w: header: %v", p, ErrFormat, err)
	}
	li := -1
	for i, h := range header {
		if strings.EqualFold(strings.TrimSpace(h), labelCol) {
			li = i
		}
	}
	if li < 0 {
		return fmt.Errorf("data facts %s: %w: no label column %q in header %q (set the label column)", p, ErrFormat, labelCol, strings.Join(header, ","))
	}
	f.Columns = without(header, li)
	f.Cols = len(header) - 1
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("data facts %s: %w: %v", p, ErrFormat, err)
		}
		content := strings.Join(without(rec, li), "\x1f")
		f.addSample(strings.TrimSpace(rec[li]), []byte(content))
	}
	f.touch(st)
	return nil
}

func (f *Facts) jsonlFile(p, labelCol string) error {
	fh, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("data facts: %w", err)
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), MaxLineBytes)
	keys := map[string]bool{}
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return fmt.Errorf("data facts %s line %d: %w: not a JSON object: %v", p, line, ErrFormat, err)
		}
		raw, ok := obj[labelCol]
		if !ok {
			return fmt.Errorf("data facts %s line %d: %w: no label key %q", p, line, ErrFormat, labelCol)
		}
		label := strings.TrimSpace(string(raw))
		var s string
		if json.Unmarshal(raw, &s) == nil {
			label = s
		}
		delete(obj, labelCol)
		for k := range obj {
			keys[k] = true
		}
		// Canonical content: keys sorted (json.Marshal sorts map keys).
		content, _ := json.Marshal(obj)
		f.addSample(label, content)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("data facts %s: %w: %v", p, ErrFormat, err)
	}
	for k := range keys {
		f.Columns = append(f.Columns, k)
	}
	sort.Strings(f.Columns)
	f.Cols = len(f.Columns)
	f.touch(st)
	return nil
}

func without(rec []string, i int) []string {
	out := make([]string, 0, len(rec))
	out = append(out, rec[:i]...)
	return append(out, rec[i+1:]...)
}

// Fingerprint is a cheap summary of path (file count, total size, newest
// modification time) that changes when the data does; the watcher compares
// fingerprints before paying for Compute.
func Fingerprint(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Sprintf("1:%d:%d", st.Size(), st.ModTime().UnixNano()), nil
	}
	var n, size, newest int64
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > MaxFiles {
			return fmt.Errorf("more than %d files", MaxFiles)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size += info.Size()
		if mt := info.ModTime().UnixNano(); mt > newest {
			newest = mt
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", path, err)
	}
	return fmt.Sprintf("%d:%d:%d", n, size, newest), nil
}
