package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic numbers of the idx format: two zero bytes, the element type (0x08 =
// unsigned byte) and the number of dimensions.
const (
	imagesMagic = 0x00000803
	labelsMagic = 0x00000801
)

// Limits on what the readers accept. They bound memory before a single pixel
// is read, so a hostile or corrupt header cannot make us allocate gigabytes.
const (
	// MaxSide is the largest accepted image height or width.
	MaxSide = 1024
	// MaxItems is the largest accepted item count when the caller passes no
	// limit of its own (MNIST's training set has 60,000).
	MaxItems = 1 << 20
	// MaxImageBytes bounds the pixel payload of one images file (256 MiB).
	MaxImageBytes = 256 << 20
)

// ErrFormat is wrapped by every error about malformed idx content, so callers
// can tell "this is not an idx file" apart from I/O failures.
var ErrFormat = errors.New("invalid idx data")

// Images is the content of an idx3 images file: N images of Rows×Cols bytes,
// stored one after the other.
type Images struct {
	N, Rows, Cols int
	Pix           []byte // N*Rows*Cols bytes, image i at Pix[i*Rows*Cols:]
}

// Sample returns the raw bytes of image i (a sub-slice, not a copy).
func (im *Images) Sample(i int) []byte {
	d := im.Rows * im.Cols
	return im.Pix[i*d : (i+1)*d : (i+1)*d]
}

// maybeGunzip returns a reader of the decompressed stream if r starts with
// the gzip magic bytes, else r itself (buffered).
func maybeGunzip(r io.Reader) (io.Reader, func() error, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip header: %v", ErrFormat, err)
		}
		return zr, zr.Close, nil
	}
	return br, func() error { return nil }, nil
}

func checkLimit(limit int) (int, error) {
	if limit < 0 {
		return 0, fmt.Errorf("item limit %d: must be 0 (default %d) or positive", limit, MaxItems)
	}
	if limit == 0 || limit > MaxItems {
		return MaxItems, nil
	}
	return limit, nil
}

// ReadIDXImages reads an idx3 unsigned-byte images file, plain or gzip
// compressed. limit caps the number of images the header may announce
// (0 means MaxItems); a header announcing more is rejected before anything
// is allocated, as is a truncated body or trailing data after the last image.
func ReadIDXImages(r io.Reader, limit int) (*Images, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	return readImages(r, limit, 0)
}

// ReadIDXImagesHead reads only the first head images of an idx3 file (all
// of them if it has fewer) and ignores the rest of the stream, for callers
// that want a prefix of a large set, e.g. a quick evaluation.
func ReadIDXImagesHead(r io.Reader, head int) (*Images, error) {
	if head < 1 || head > MaxItems {
		return nil, fmt.Errorf("head %d: must be 1..%d", head, MaxItems)
	}
	return readImages(r, 0, head)
}

// readImages reads all images (head == 0, at most limit) or the first head.
func readImages(r io.Reader, limit, head int) (*Images, error) {
	zr, closeZ, err := maybeGunzip(r)
	if err != nil {
		return nil, fmt.Errorf("read idx images: %w", err)
	}
	defer closeZ()
	var hdr [16]byte
	if _, err := io.ReadFull(zr, hdr[:4]); err != nil {
		return nil, fmt.Errorf("read idx images header: %w: need 16 bytes: %v", ErrFormat, err)
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != imagesMagic {
		return nil, fmt.Errorf("read idx images: %w: magic %#08x, want %#08x (unsigned bytes, 3 dimensions)", ErrFormat, magic, imagesMagic)
	}
	if _, err := io.ReadFull(zr, hdr[4:]); err != nil {
		return nil, fmt.Errorf("read idx images header: %w: need 16 bytes: %v", ErrFormat, err)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	rows := binary.BigEndian.Uint32(hdr[8:])
	cols := binary.BigEndian.Uint32(hdr[12:])
	if head > 0 {
		n = min(n, uint32(head))
	} else if n > uint32(limit) {
		return nil, fmt.Errorf("read idx images: %w: header announces %d images, limit is %d", ErrFormat, n, limit)
	}
	if rows == 0 || rows > MaxSide || cols == 0 || cols > MaxSide {
		return nil, fmt.Errorf("read idx images: %w: image size %dx%d, each side must be 1..%d", ErrFormat, rows, cols, MaxSide)
	}
	total := uint64(n) * uint64(rows) * uint64(cols)
	if total > MaxImageBytes {
		return nil, fmt.Errorf("read idx images: %w: %d images of %dx%d is %d bytes, limit is %d", ErrFormat, n, rows, cols, total, MaxImageBytes)
	}
	im := &Images{N: int(n), Rows: int(rows), Cols: int(cols), Pix: make([]byte, total)}
	if got, err := io.ReadFull(zr, im.Pix); err != nil {
		return nil, fmt.Errorf("read idx images: %w: truncated: header announces %d pixel bytes, got %d: %v", ErrFormat, total, got, err)
	}
	if head > 0 {
		return im, nil
	}
	if err := expectEOF(zr); err != nil {
		return nil, fmt.Errorf("read idx images: %w", err)
	}
	return im, nil
}

// ReadIDXLabels reads an idx1 unsigned-byte labels file, plain or gzip
// compressed, with the same limit rule as ReadIDXImages. It does not judge
// the label values; NewSet does.
func ReadIDXLabels(r io.Reader, limit int) ([]byte, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	return readLabels(r, limit, 0)
}

// ReadIDXLabelsHead reads only the first head labels of an idx1 file (all
// of them if it has fewer), like ReadIDXImagesHead.
func ReadIDXLabelsHead(r io.Reader, head int) ([]byte, error) {
	if head < 1 || head > MaxItems {
		return nil, fmt.Errorf("head %d: must be 1..%d", head, MaxItems)
	}
	return readLabels(r, 0, head)
}

func readLabels(r io.Reader, limit, head int) ([]byte, error) {
	zr, closeZ, err := maybeGunzip(r)
	if err != nil {
		return nil, fmt.Errorf("read idx labels: %w", err)
	}
	defer closeZ()
	var hdr [8]byte
	if _, err := io.ReadFull(zr, hdr[:4]); err != nil {
		return nil, fmt.Errorf("read idx labels header: %w: need 8 bytes: %v", ErrFormat, err)
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != labelsMagic {
		return nil, fmt.Errorf("read idx labels: %w: magic %#08x, want %#08x (unsigned bytes, 1 dimension)", ErrFormat, magic, labelsMagic)
	}
	if _, err := io.ReadFull(zr, hdr[4:]); err != nil {
		return nil, fmt.Errorf("read idx labels header: %w: need 8 bytes: %v", ErrFormat, err)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if head > 0 {
		n = min(n, uint32(head))
	} else if n > uint32(limit) {
		return nil, fmt.Errorf("read idx labels: %w: header announces %d labels, limit is %d", ErrFormat, n, limit)
	}
	labels := make([]byte, n)
	if got, err := io.ReadFull(zr, labels); err != nil {
		return nil, fmt.Errorf("read idx labels: %w: truncated: header announces %d labels, got %d: %v", ErrFormat, n, got, err)
	}
	if head > 0 {
		return labels, nil
	}
	if err := expectEOF(zr); err != nil {
		return nil, fmt.Errorf("read idx labels: %w", err)
	}
	return labels, nil
}

// expectEOF rejects trailing bytes: a file longer than its header says is
// more likely a wrong or concatenated file than a valid one.
func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	if n > 0 {
		return fmt.Errorf("%w: trailing data after the announced items", ErrFormat)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: after the announced items: %v", ErrFormat, err)
	}
	return nil
}

// WriteIDXImages writes im as a plain (uncompressed) idx3 file.
func WriteIDXImages(w io.Writer, im *Images) error {
	if im.N < 0 || im.Rows <= 0 || im.Cols <= 0 || len(im.Pix) != im.N*im.Rows*im.Cols {
		return fmt.Errorf("write idx images: inconsistent image set: %d images of %dx%d but %d pixel bytes", im.N, im.Rows, im.Cols, len(im.Pix))
	}
	var hdr [16]byte
	binary.BigEndian.PutUint32(hdr[0:], imagesMagic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(im.N))
	binary.BigEndian.PutUint32(hdr[8:], uint32(im.Rows))
	binary.BigEndian.PutUint32(hdr[12:], uint32(im.Cols))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write idx images header: %w", err)
	}
	if _, err := w.Write(im.Pix); err != nil {
		return fmt.Errorf("write idx images: %w", err)
	}
	return nil
}

// WriteIDXLabels writes labels as a plain (uncompressed) idx1 file.
func WriteIDXLabels(w io.Writer, labels []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:], labelsMagic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(labels)))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write idx labels header: %w", err)
	}
	if _, err := w.Write(labels); err != nil {
		return fmt.Errorf("write idx labels: %w", err)
	}
	return nil
}

// encodeIDXImages is WriteIDXImages into memory (used by tests and fuzzing).
func encodeIDXImages(im *Images) []byte {
	var b bytes.Buffer
	_ = WriteIDXImages(&b, im)
	return b.Bytes()
}
