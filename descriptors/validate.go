package descriptors

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/descriptors/sketch"
)

// Validate checks a descriptor's header and body: known kind, body matching
// the kind, required fields present (unless sealed for selective
// disclosure), numbers in range. It does not check the signature or expiry.
func Validate(d *Descriptor) error {
	if d == nil {
		return &FieldError{Field: "descriptor", Want: "a descriptor", Err: ErrMissingField}
	}
	if d.Kind == "" {
		return &FieldError{Field: "kind", Want: "one of data, model, compute, testset", Err: ErrMissingField}
	}
	if !d.Kind.Valid() {
		return &FieldError{Field: "kind", Value: strconv.Quote(string(d.Kind)), Want: "one of data, model, compute, testset", Err: ErrUnknownKind}
	}
	if d.Owner == "" {
		return &FieldError{Field: "owner", Want: "the signer's peer ID", Err: ErrMissingField}
	}
	if _, err := peer.Decode(d.Owner); err != nil {
		return &FieldError{Field: "owner", Value: strconv.Quote(d.Owner), Want: "a peer ID", Err: ErrInvalidField}
	}
	if err := checkName("name", d.Name, true); err != nil {
		return err
	}
	if d.Seq == 0 {
		return &FieldError{Field: "seq", Value: "0", Want: "a sequence number >= 1", Err: ErrInvalidField}
	}
	if d.Issued.IsZero() {
		return &FieldError{Field: "issued", Want: "the issue time", Err: ErrMissingField}
	}
	if d.Expires.IsZero() {
		return &FieldError{Field: "expires", Want: "the expiry time", Err: ErrMissingField}
	}
	if !d.Expires.After(d.Issued) {
		return &FieldError{Field: "expires", Value: d.Expires.UTC().String(), Want: "after issued " + d.Issued.UTC().String(), Err: ErrInvalidField}
	}
	if ttl := d.Expires.Sub(d.Issued); ttl > MaxTTL {
		return &FieldError{Field: "expires", Value: d.Expires.UTC().String(), Want: fmt.Sprintf("at most %v after issued", MaxTTL), Err: ErrInvalidField}
	}
	bodies := map[Kind]bool{KindData: d.Data != nil, KindModel: d.Model != nil, KindCompute: d.Compute != nil, KindTestset: d.Testset != nil}
	for k, set := range bodies {
		if k == d.Kind && !set {
			return &FieldError{Field: string(k), Want: fmt.Sprintf("a %s body for kind %s", k, d.Kind), Err: ErrMissingField}
		}
		if k != d.Kind && set {
			return &FieldError{Field: string(k), Value: "present", Want: fmt.Sprintf("only a %s body in a %s descriptor", d.Kind, d.Kind), Err: ErrKindMismatch}
		}
	}
	for path, h := range d.Sealed {
		if !sealable(d.Kind, path) {
			return &FieldError{Field: "sealed." + path, Value: strconv.Quote(path), Want: "a sealable field of " + string(d.Kind) + ": " + strings.Join(SealableFields(d.Kind), ", "), Err: ErrInvalidField}
		}
		if len(h) != 32 {
			return &FieldError{Field: "sealed." + path, Value: fmt.Sprintf("%d bytes", len(h)), Want: "a 32-byte SHA-256 commitment", Err: ErrInvalidField}
		}
	}
	v := validator{sealed: d.Sealed}
	switch d.Kind {
	case KindData:
		v.data(d.Data)
	case KindModel:
		v.model(d.Model)
	case KindCompute:
		v.compute(d.Compute)
	case KindTestset:
		v.testset(d.Testset)
	}
	return v.err
}

type validator struct {
	sealed map[string][]byte
	err    error
}

func (v *validator) fail(e *FieldError) {
	if v.err == nil {
		v.err = e
	}
}

func (v *validator) required(path, val, want string) {
	if _, ok := v.sealed[path]; ok {
		return
	}
	if strings.TrimSpace(val) == "" {
		v.fail(&FieldError{Field: path, Want: want, Err: ErrMissingField})
		return
	}
	if err := checkName(path, val, false); err != nil {
		v.fail(err.(*FieldError))
	}
}

func (v *validator) nonNeg(path string, n int64) {
	if n < 0 {
		v.fail(&FieldError{Field: path, Value: strconv.FormatInt(n, 10), Want: "a number >= 0", Err: ErrInvalidField})
	}
}

func (v *validator) finite(path string, f float64, lo, hi float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
		v.fail(&FieldError{Field: path, Value: strconv.FormatFloat(f, 'g', -1, 64), Want: fmt.Sprintf("a number in [%g, %g]", lo, hi), Err: ErrInvalidField})
	}
}

func (v *validator) price(path string, p *Price) {
	if p == nil {
		return
	}
	v.finite(path+".amount", p.Amount, 0, math.MaxFloat64)
	if p.Amount > 0 && p.Unit == "" {
		v.fail(&FieldError{Field: path + ".unit", Want: `a unit such as "credit/epoch"`, Err: ErrMissingField})
	}
}

func (v *validator) policy(path string, p *Policy) {
	if p == nil {
		return
	}
	switch p.Mode {
	case PolicyOpen, PolicyTrainInPlace, PolicyPrivate:
	default:
		v.fail(&FieldError{Field: path + ".mode", Value: strconv.Quote(p.Mode), Want: "open, train-in-place or private", Err: ErrInvalidField})
	}
	for i, a := range p.AllowPeers {
		if _, err := peer.Decode(a); err != nil {
			v.fail(&FieldError{Field: fmt.Sprintf("%s.allow_peers[%d]", path, i), Value: strconv.Quote(a), Want: "a peer ID", Err: ErrInvalidField})
		}
	}
}

func (v *validator) dist(path string, m map[string]int64) {
	for k, n := range m {
		if n < 0 {
			v.fail(&FieldError{Field: path + "[" + strconv.Quote(k) + "]", Value: strconv.FormatInt(n, 10), Want: "a count >= 0", Err: ErrInvalidField})
		}
	}
}

func (v *validator) sketch(path string, s *Sketch) {
	if s == nil {
		return
	}
	if s.K <= 0 || s.K > sketch.MaxK || len(s.Mins) != sketch.BytesPerSlot*s.K {
		v.fail(&FieldError{Field: path, Value: fmt.Sprintf("k=%d with %d bytes of minima", s.K, len(s.Mins)), Want: fmt.Sprintf("1 <= k <= %d and %d*k bytes of minima", sketch.MaxK, sketch.BytesPerSlot), Err: ErrInvalidField})
	}
	if s.Algo == "" {
		v.fail(&FieldError{Field: path + ".algo", Want: "the sketch algorithm name", Err: ErrMissingField})
	}
}

func (v *validator) data(d *Data) {
	v.required("data.task", d.Task, `a task such as "digits-classification"`)
	v.required("data.modality", d.Modality, `a modality such as "image"`)
	v.nonNeg("data.samples", d.Samples)
	v.nonNeg("data.size_bytes", d.SizeBytes)
	v.dist("data.label_dist", d.LabelDist)
	for k, q := range d.Quality {
		v.finite("data.quality."+k, q, -math.MaxFloat64, math.MaxFloat64)
	}
	v.sketch("data.sketch", d.Sketch)
	v.policy("data.policy", &d.Policy)
	v.price("data.price", d.Price)
}

func (v *validator) model(m *Model) {
	v.required("model.version", m.Version, `a version such as "1.0"`)
	v.required("model.architecture", m.Architecture, `an architecture such as "mlp-784-128-10"`)
	if _, ok := v.sealed["model.skills"]; !ok {
		if len(m.Skills) == 0 {
			v.fail(&FieldError{Field: "model.skills", Want: `at least one skill such as "classify-digits"`, Err: ErrMissingField})
		}
		for i, s := range m.Skills {
			v.required(fmt.Sprintf("model.skills[%d]", i), s, "a non-empty skill name")
		}
	}
	v.nonNeg("model.params", m.Params)
	v.nonNeg("model.size_bytes", m.SizeBytes)
	v.finite("model.claimed_accuracy", m.ClaimedAccuracy, 0, 1)
	v.finite("model.latency_ms", m.LatencyMs, 0, math.MaxFloat64)
	for i, e := range m.Evaluations {
		v.finite(fmt.Sprintf("model.evaluations[%d].value", i), e.Value, -math.MaxFloat64, math.MaxFloat64)
	}
	if m.WeightsRoot != "" {
		if _, err := cid.Decode(m.WeightsRoot); err != nil {
			v.fail(&FieldError{Field: "model.weights_root", Value: strconv.Quote(m.WeightsRoot), Want: "a CID", Err: ErrInvalidField})
		}
	}
	v.policy("model.policy", m.Policy)
	v.price("model.price", m.Price)
}

func (v *validator) compute(c *Compute) {
	if c.CPUCores < 1 {
		v.fail(&FieldError{Field: "compute.cpu_cores", Value: strconv.Itoa(c.CPUCores), Want: "at least 1", Err: ErrInvalidField})
	}
	v.nonNeg("compute.memory_bytes", c.MemoryBytes)
	v.finite("compute.free_cpu", c.FreeCPU, 0, 1)
	v.finite("compute.free_memory", c.FreeMemory, 0, 1)
	for i, r := range c.Roles {
		v.required(fmt.Sprintf("compute.roles[%d]", i), r, "a non-empty role")
	}
	v.price("compute.price", c.Price)
}

func (v *validator) testset(t *Testset) {
	v.required("testset.task", t.Task, `a task such as "digits-classification"`)
	if _, ok := v.sealed["testset.samples"]; !ok && t.Samples < 1 {
		v.fail(&FieldError{Field: "testset.samples", Value: strconv.FormatInt(t.Samples, 10), Want: "at least 1", Err: ErrInvalidField})
	}
	v.dist("testset.label_dist", t.LabelDist)
	v.sketch("testset.sketch", t.Sketch)
	v.price("testset.price", t.Price)
}

// checkName accepts 1..MaxNameLen printable UTF-8 characters.
func checkName(field, s string, required bool) error {
	if s == "" {
		if required {
			return &FieldError{Field: field, Want: fmt.Sprintf("1 to %d printable characters", MaxNameLen), Err: ErrMissingField}
		}
		return nil
	}
	if len(s) > MaxNameLen || !utf8.ValidString(s) {
		return &FieldError{Field: field, Value: strconv.Quote(s), Want: fmt.Sprintf("1 to %d printable UTF-8 characters", MaxNameLen), Err: ErrInvalidField}
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return &FieldError{Field: field, Value: strconv.Quote(s), Want: "printable characters only", Err: ErrInvalidField}
		}
	}
	return nil
}
