package chunker

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Params bound the chunk sizes. Avg must be a power of two.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams: 64 KiB / 256 KiB / 1 MiB. Changing them (or the gear table)
// changes every CID ever produced, so they are part of the format.
var DefaultParams = Params{Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20}

// Validate reports whether p is usable, naming the offending field.
func (p Params) Validate() error {
	switch {
	case p.Min < 64:
		return fmt.Errorf("chunker: Min=%d, want >= 64", p.Min)
	case p.Avg <= p.Min:
		return fmt.Errorf("chunker: Avg=%d, want > Min=%d", p.Avg, p.Min)
	case p.Max <= p.Avg:
		return fmt.Errorf("chunker: Max=%d, want > Avg=%d", p.Max, p.Avg)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: Avg=%d, want a power of two", p.Avg)
	case p.Max > 64<<20:
		return fmt.Errorf("chunker: Max=%d, want <= 64 MiB", p.Max)
	}
	return nil
}

// gear is derived from a fixed splitmix64 sequence so it never changes
// between builds; it is part of the chunk format.
var gear = func() (t [256]uint64) {
	x := uint64(0x6461_6974_6e2d_6364) // "daitn-cd"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}()

// Chunker reads from r and returns successive chunks.
type Chunker struct {
	r            io.Reader
	p            Params
	maskS, maskL uint64
	buf          []byte
	start, end   int
	eof          bool
}

// New returns a Chunker over r. Chunks returned by Next alias an internal
// buffer of 2*Max bytes, so memory is bounded whatever the input size.
func New(r io.Reader, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := bits.TrailingZeros(uint(p.Avg))
	// The gear hash shifts left, so high bits depend on the most recent
	// 64 bytes; masks are taken from the top. Normalised chunking: harder
	// before Avg (b+2 bits), easier after (b-2 bits).
	top := func(n int) uint64 { return ^uint64(0) << (64 - n) }
	return &Chunker{r: r, p: p, maskS: top(b + 2), maskL: top(b - 2), buf: make([]byte, 2*p.Max)}, nil
}

// Next returns the next chunk, or io.EOF after the last one. The slice is
// valid until the next call.
func (c *Chunker) Next() ([]byte, error) {
	if c.end-c.start < c.p.Max && !c.eof {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	n := c.end - c.start
	if n == 0 {
		return nil, io.EOF
	}
	cut := Cut(c.buf[c.start:c.end], c.p, c.maskS, c.maskL)
	ch := c.buf[c.start : c.start+cut]
	c.start += cut
	return ch, nil
}

func (c *Chunker) fill() error {
	copy(c.buf, c.buf[c.start:c.end])
	c.end -= c.start
	c.start = 0
	for c.end < len(c.buf) && !c.eof {
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if err != nil {
			return fmt.Errorf("chunker: read: %w", err)
		}
	}
	return nil
}

// Cut returns the length of the first chunk of data (all of data if it is
// shorter than Min or no boundary is found before Max).
func Cut(data []byte, p Params, maskS, maskL uint64) int {
	n := len(data)
	if n <= p.Min {
		return n
	}
	if n > p.Max {
		n = p.Max
	}
	normal := p.Avg
	if normal > n {
		normal = n
	}
	var fp uint64
	i := p.Min
	for ; i < normal; i++ {
		fp = (fp << 1) + gear[data[i]]
		if fp&maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		fp = (fp << 1) + gear[data[i]]
		if fp&maskL == 0 {
			return i + 1
		}
	}
	return n
}
