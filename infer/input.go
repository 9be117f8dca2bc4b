package infer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
)

// ImageSide is the side of the square grayscale images the digit models
// take (MNIST: 28x28 = 784 inputs).
const ImageSide = 28

// ErrBadInput is wrapped by every error about a query's input.
var ErrBadInput = errors.New("bad input")

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xff, 0xd8, 0xff}
)

// DetectFormat names the format of b: PNG and JPEG by their magic bytes,
// anything else is taken as raw float32 values.
func DetectFormat(b []byte) Format {
	switch {
	case bytes.HasPrefix(b, pngMagic):
		return FormatPNG
	case bytes.HasPrefix(b, jpegMagic):
		return FormatJPEG
	}
	return FormatF32
}

func badInput(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, a...))
}

// DecodeInput turns a query's input into the features of a model taking
// inputs values, in the MNIST convention: pixels scaled to [0,1], a light
// digit on a dark background.
//
//   - PNG or JPEG: exactly 28x28 pixels (any colour model; converted to
//     gray). The image is not resized: MNIST digits are centred by their
//     centre of mass in a 20x20 box, and a naive resize of a larger picture
//     would look nothing like them, so a wrong size is an error rather than
//     a silently poor answer. An image whose border is mostly light is
//     taken as dark ink on light paper and inverted.
//   - f32: exactly inputs little-endian float32 values, each in [0,1].
func DecodeInput(f Format, b []byte, inputs int) ([]float32, error) {
	if len(b) == 0 {
		return nil, badInput("input is empty")
	}
	if len(b) > MaxInputBytes {
		return nil, badInput("input is %d bytes, at most %d accepted", len(b), MaxInputBytes)
	}
	if f == FormatAuto {
		f = DetectFormat(b)
	}
	switch f {
	case FormatPNG, FormatJPEG:
		if inputs != ImageSide*ImageSide {
			return nil, badInput("the model takes %d values, an image gives %dx%d=%d; send raw float32 values instead", inputs, ImageSide, ImageSide, ImageSide*ImageSide)
		}
		return decodeImage(f, b)
	case FormatF32:
		return decodeF32(b, inputs)
	}
	return nil, badInput("format %q: want png, jpeg or f32", truncate(string(f), 32))
}

func decodeImage(f Format, b []byte) ([]float32, error) {
	decConfig, dec := png.DecodeConfig, png.Decode
	if f == FormatJPEG {
		decConfig, dec = jpeg.DecodeConfig, jpeg.Decode
	}
	// The header first: a small file can announce a huge image, and its
	// size is checked before any pixel is allocated.
	cfg, err := decConfig(bytes.NewReader(b))
	if err != nil {
		return nil, badInput("%s header: %v", f, err)
	}
	if cfg.Width != ImageSide || cfg.Height != ImageSide {
		return nil, badInput("image is %dx%d pixels, want %dx%d grayscale (MNIST size; crop and scale it first)", cfg.Width, cfg.Height, ImageSide, ImageSide)
	}
	img, err := dec(bytes.NewReader(b))
	if err != nil {
		return nil, badInput("%s image: %v", f, err)
	}
	r := img.Bounds()
	if r.Dx() != ImageSide || r.Dy() != ImageSide {
		return nil, badInput("image is %dx%d pixels, want %dx%d", r.Dx(), r.Dy(), ImageSide, ImageSide)
	}
	x := make([]float32, ImageSide*ImageSide)
	border, nBorder := 0, 0
	for yy := 0; yy < ImageSide; yy++ {
		for xx := 0; xx < ImageSide; xx++ {
			g := color.GrayModel.Convert(img.At(r.Min.X+xx, r.Min.Y+yy)).(color.Gray).Y
			x[yy*ImageSide+xx] = float32(g) / 255
			if xx == 0 || yy == 0 || xx == ImageSide-1 || yy == ImageSide-1 {
				border += int(g)
				nBorder++
			}
		}
	}
	if border > 128*nBorder {
		for i := range x {
			x[i] = 1 - x[i]
		}
	}
	return x, nil
}

func decodeF32(b []byte, inputs int) ([]float32, error) {
	if len(b) != 4*inputs {
		return nil, badInput("%d bytes is not an image (no PNG or JPEG signature) nor %d raw float32 values (%d bytes)", len(b), inputs, 4*inputs)
	}
	x := make([]float32, inputs)
	for i := range x {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if !(v >= 0 && v <= 1) {
			return nil, badInput("value %d is %v, want 0..1 (pixels scaled from 0..255)", i, v)
		}
		x[i] = v
	}
	return x, nil
}

// EncodeF32 writes features as the raw little-endian float32 input format.
func EncodeF32(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// EncodePNG writes 28x28 features in [0,1] as a grayscale PNG (a light
// digit on a dark background, like MNIST).
func EncodePNG(w io.Writer, x []float32) error {
	if len(x) != ImageSide*ImageSide {
		return fmt.Errorf("encode png: %d values, want %d", len(x), ImageSide*ImageSide)
	}
	img := image.NewGray(image.Rect(0, 0, ImageSide, ImageSide))
	for i, v := range x {
		img.Pix[i] = uint8(min(max(v, 0), 1)*255 + 0.5)
	}
	return png.Encode(w, img)
}
