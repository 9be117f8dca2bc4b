package infer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"strings"
	"testing"
)

func digit(t *testing.T, i int) []float32 {
	_, test, _ := TrainedModel(t)
	d := test.Dim()
	return test.X[i*d : (i+1)*d]
}

func pngOf(t *testing.T, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A real MNIST digit survives PNG (exactly: 8-bit gray), JPEG (closely),
// raw float32 (exactly) and light-background inversion.
func TestDecodeInputFormats(t *testing.T) {
	x := digit(t, 0)
	var pb bytes.Buffer
	if err := EncodePNG(&pb, x); err != nil {
		t.Fatal(err)
	}
	gray := image.NewGray(image.Rect(0, 0, 28, 28))
	inv := image.NewRGBA(image.Rect(0, 0, 28, 28))
	for i, v := range x {
		g := uint8(v*255 + 0.5)
		gray.Pix[i] = g
		inv.Set(i%28, i/28, color.RGBA{255 - g, 255 - g, 255 - g, 255})
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, gray, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		format Format
		in     []byte
		tol    float64
	}{
		{"png detected", FormatAuto, pb.Bytes(), 0.5 / 255},
		{"png named", FormatPNG, pb.Bytes(), 0.5 / 255},
		{"f32", FormatAuto, EncodeF32(x), 0},
		{"jpeg", FormatAuto, jb.Bytes(), 0.15},
		{"dark ink on white, RGBA", FormatAuto, pngOf(t, inv), 1.0 / 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeInput(tc.format, tc.in, 784)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range x {
				worst = max(worst, math.Abs(float64(got[i]-x[i])))
			}
			if worst > tc.tol {
				t.Fatalf("largest pixel error %v, want <= %v", worst, tc.tol)
			}
		})
	}
}

func TestDecodeInputRefusals(t *testing.T) {
	big := pngOf(t, image.NewGray(image.Rect(0, 0, 32, 30)))
	// A tiny PNG announcing a 100000x100000 image: refused from the header,
	// before any pixel memory is allocated.
	bomb := pngOf(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	bomb = bytes.Clone(bomb)
	copy(bomb[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	binary.BigEndian.PutUint32(bomb[29:33], crc32.ChecksumIEEE(bomb[12:29]))
	nan := EncodeF32(make([]float32, 784))
	copy(nan[40:], EncodeF32([]float32{float32(math.NaN())}))
	for _, tc := range []struct {
		name   string
		format Format
		in     []byte
		inputs int
		want   string
	}{
		{"empty", FormatAuto, nil, 784, "empty"},
		{"wrong image size", FormatAuto, big, 784, "32x30 pixels, want 28x28"},
		{"bomb header", FormatAuto, bomb, 784, "100000x100000 pixels"},
		{"garbage", FormatAuto, []byte("definitely not an image"), 784, "not an image"},
		{"garbage named png", FormatPNG, []byte("definitely not an image"), 784, "png header"},
		{"raw too short", FormatF32, make([]byte, 100), 784, "3136 bytes"},
		{"raw NaN", FormatAuto, nan, 784, "value 10 is NaN"},
		{"image for a non-image model", FormatAuto, big, 100, "takes 100 values"},
		{"oversized", FormatAuto, make([]byte, MaxInputBytes+1), 784, "at most"},
		{"unknown format", Format("gif"), []byte("GIF89a"), 784, "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeInput(tc.format, tc.in, tc.inputs)
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrBadInput naming %q", err, tc.want)
			}
		})
	}
}

func TestWireLimits(t *testing.T) {
	if _, err := MarshalRequest(&Request{Skill: "s", Input: make([]byte, MaxInputBytes+1)}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("oversized input encoded: %v", err)
	}
	if _, err := MarshalRequest(&Request{Input: []byte{1}}); err == nil || !strings.Contains(err.Error(), "neither a model nor a skill") {
		t.Fatalf("request without model or skill: %v", err)
	}
	if _, err := MarshalResponse(&Response{Status: StatusOK, Class: 4, Probs: []float32{0.5, 0.5}, Model: "m"}); err == nil {
		t.Fatal("class outside the probabilities encoded")
	}
	b, _ := encMode.Marshal(map[int]any{1: "ok", 3: 0, 4: []float32{0.5, 0.5}, 5: "m", 9: "extra"})
	if _, err := UnmarshalResponse(b); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("response with an unknown field: %v", err)
	}
}
