package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/learn"
)

// Bounds on job settings.
const (
	MaxRounds     = 10000
	MaxEpochs     = 1000
	MaxBatch      = 1 << 20
	MaxLR         = 10.0
	MaxClients    = 1000
	MaxJobBytes   = 64 << 10
	DefaultTask   = "digits-classification"
	defaultEpochs = 1
	defaultBatch  = 10
	defaultLR     = 0.05
	defaultClient = 10
)

// ErrJobSpec is wrapped by every job file error.
var ErrJobSpec = errors.New("invalid job spec")

// Duration is a time.Duration written as "30m" in TOML and JSON.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like 30s, 10m or 2h: %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// JobSpec is what a client submits (job.toml or JSON).
type JobSpec struct {
	Name     string         `toml:"name" json:"name,omitempty"`
	Model    ModelSpec      `toml:"model" json:"model"`
	Target   TargetSpec     `toml:"target" json:"target"`
	Data     DataSpec       `toml:"data" json:"data"`
	Settings Settings       `toml:"settings" json:"settings"`
	Eval     EvaluationSpec `toml:"evaluation" json:"evaluation"`
}

// ModelSpec names the model to train.
type ModelSpec struct {
	Arch    string `toml:"arch" json:"arch"`
	Initial string `toml:"initial,omitempty" json:"initial,omitempty"` // transfer root CID of initial weights
	Seed    uint64 `toml:"seed,omitempty" json:"seed,omitempty"`       // initial weights when Initial is empty
}

// TargetSpec says when the job is done.
type TargetSpec struct {
	Accuracy  float64  `toml:"accuracy" json:"accuracy"`
	Deadline  Duration `toml:"deadline,omitempty" json:"deadline,omitempty"`
	MaxRounds int      `toml:"max_rounds,omitempty" json:"max_rounds,omitempty"`
}

// DataSpec is what the data must be.
type DataSpec struct {
	Task        string   `toml:"task" json:"task"`
	MinSamples  int64    `toml:"min_samples,omitempty" json:"min_samples,omitempty"`
	MaxAge      Duration `toml:"max_age,omitempty" json:"max_age,omitempty"`
	MinDatasets int      `toml:"min_datasets,omitempty" json:"min_datasets,omitempty"`
}

// Settings are the FedAvg settings; zero fields take defaults (TAG/HPO).
// They may change between rounds (set).
type Settings struct {
	Clients    int     `toml:"clients,omitempty" json:"clients,omitempty"`
	Epochs     int     `toml:"epochs,omitempty" json:"epochs,omitempty"`
	Batch      int     `toml:"batch,omitempty" json:"batch,omitempty"`
	LR         float64 `toml:"lr,omitempty" json:"lr,omitempty"`
	Seed       uint64  `toml:"seed,omitempty" json:"seed,omitempty"`
	MaxSamples int     `toml:"max_samples,omitempty" json:"max_samples,omitempty"` // per data node and round, 0 = all
}

// EvaluationSpec optionally pins the MPVU.
type EvaluationSpec struct {
	MPVU string `toml:"mpvu,omitempty" json:"mpvu,omitempty"`
}

// ParseJob reads a job file; format is chosen by the name's extension
// (.json is JSON, anything else TOML). Errors name the key.
func ParseJob(name string, b []byte) (*JobSpec, error) {
	if strings.EqualFold(filepath.Ext(name), ".json") {
		return ParseJobJSON(b)
	}
	return ParseJobTOML(b)
}

// ParseJobTOML parses and validates a TOML job spec; unknown keys are errors.
func ParseJobTOML(b []byte) (*JobSpec, error) {
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("%w: job file is %d bytes, at most %d accepted", ErrJobSpec, len(b), MaxJobBytes)
	}
	var s JobSpec
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJobSpec, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%w: unknown key %q (known: name, model.{arch,initial,seed}, target.{accuracy,deadline,max_rounds}, data.{task,min_samples,max_age,min_datasets}, settings.{clients,epochs,batch,lr,seed,max_samples}, evaluation.mpvu)", ErrJobSpec, keys[0])
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// ParseJobJSON parses and validates a JSON job spec; unknown keys are errors.
func ParseJobJSON(b []byte) (*JobSpec, error) {
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("%w: job file is %d bytes, at most %d accepted", ErrJobSpec, len(b), MaxJobBytes)
	}
	var s JobSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%w: key %q: got a JSON %s, want %s", ErrJobSpec, te.Field, te.Value, te.Type)
		}
		return nil, fmt.Errorf("%w: %v", ErrJobSpec, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the job object", ErrJobSpec)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func specErr(key string, v any, want string) error {
	return fmt.Errorf("%w: %s = %v: want %s", ErrJobSpec, key, v, want)
}

// Validate checks every field and names the first bad key.
func (s *JobSpec) Validate() error {
	if len(s.Name) > 128 {
		return specErr("name", trunc(s.Name), "at most 128 characters")
	}
	if s.Model.Arch == "" {
		return specErr("model.arch", `""`, "one of "+strings.Join(learn.ArchNames(), ", "))
	}
	if _, err := learn.LookupArch(s.Model.Arch); err != nil {
		return specErr("model.arch", fmt.Sprintf("%q", s.Model.Arch), "one of "+strings.Join(learn.ArchNames(), ", "))
	}
	if s.Model.Initial != "" {
		if _, err := cid.Decode(s.Model.Initial); err != nil {
			return specErr("model.initial", fmt.Sprintf("%q", s.Model.Initial), "a transfer root CID")
		}
	}
	if math.IsNaN(s.Target.Accuracy) || s.Target.Accuracy <= 0 || s.Target.Accuracy > 1 {
		return specErr("target.accuracy", s.Target.Accuracy, "a fraction in (0, 1], e.g. 0.97")
	}
	if s.Target.Deadline.Duration < 0 {
		return specErr("target.deadline", s.Target.Deadline, "a positive duration or none")
	}
	if s.Target.MaxRounds < 0 || s.Target.MaxRounds > MaxRounds {
		return specErr("target.max_rounds", s.Target.MaxRounds, fmt.Sprintf("0..%d (0 = %d)", MaxRounds, MaxRounds))
	}
	if strings.TrimSpace(s.Data.Task) == "" {
		return specErr("data.task", `""`, `a task such as "digits-classification"`)
	}
	if len(s.Data.Task) > 128 {
		return specErr("data.task", trunc(s.Data.Task), "at most 128 characters")
	}
	if s.Data.MinSamples < 0 {
		return specErr("data.min_samples", s.Data.MinSamples, ">= 0")
	}
	if s.Data.MaxAge.Duration < 0 {
		return specErr("data.max_age", s.Data.MaxAge, "a positive duration or none")
	}
	if s.Data.MinDatasets < 0 || s.Data.MinDatasets > MaxClients {
		return specErr("data.min_datasets", s.Data.MinDatasets, fmt.Sprintf("0..%d", MaxClients))
	}
	if err := s.Settings.Validate("settings."); err != nil {
		return err
	}
	if s.Eval.MPVU != "" {
		if _, err := peer.Decode(s.Eval.MPVU); err != nil {
			return specErr("evaluation.mpvu", fmt.Sprintf("%q", s.Eval.MPVU), "a peer ID")
		}
	}
	return nil
}

// Validate checks settings; prefix names the keys in errors.
func (st Settings) Validate(prefix string) error {
	switch {
	case st.Clients < 0 || st.Clients > MaxClients:
		return specErr(prefix+"clients", st.Clients, fmt.Sprintf("1..%d (0 = default %d)", MaxClients, defaultClient))
	case st.Epochs < 0 || st.Epochs > MaxEpochs:
		return specErr(prefix+"epochs", st.Epochs, fmt.Sprintf("1..%d (0 = default %d)", MaxEpochs, defaultEpochs))
	case st.Batch < 0 || st.Batch > MaxBatch:
		return specErr(prefix+"batch", st.Batch, fmt.Sprintf("1..%d, 0 = default %d", MaxBatch, defaultBatch))
	case math.IsNaN(st.LR) || st.LR < 0 || st.LR > MaxLR:
		return specErr(prefix+"lr", st.LR, fmt.Sprintf("in (0, %v] (0 = default %v)", MaxLR, defaultLR))
	case st.MaxSamples < 0:
		return specErr(prefix+"max_samples", st.MaxSamples, ">= 0 (0 = all)")
	}
	return nil
}

// withDefaults fills unset settings with the defaults (the role TAG/HPO
// play in the draft): FedAvg with E=1, B=10, lr=0.05, 10 clients a round.
func (st Settings) withDefaults() Settings {
	if st.Clients == 0 {
		st.Clients = defaultClient
	}
	if st.Epochs == 0 {
		st.Epochs = defaultEpochs
	}
	if st.Batch == 0 {
		st.Batch = defaultBatch
	}
	if st.LR == 0 {
		st.LR = defaultLR
	}
	return st
}

// ParseSet parses "lr=0.05 clients=10" style assignments into a settings
// change. Only the keys given are set in the returned mask.
func ParseSet(args []string) (SetRequest, error) {
	var r SetRequest
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return r, fmt.Errorf("set %q: want key=value with key one of lr, clients, epochs, batch, max_samples", a)
		}
		switch strings.TrimSpace(k) {
		case "lr":
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil || !(f > 0 && f <= MaxLR) {
				return r, fmt.Errorf("set lr=%s: want a number in (0, %v]", v, MaxLR)
			}
			r.LR = &f
		case "clients", "epochs", "batch", "max_samples":
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil || n < 0 || (n == 0 && k != "max_samples") {
				return r, fmt.Errorf("set %s=%s: want a positive integer", k, v)
			}
			switch k {
			case "clients":
				if n > MaxClients {
					return r, fmt.Errorf("set clients=%d: at most %d", n, MaxClients)
				}
				r.Clients = &n
			case "epochs":
				if n > MaxEpochs {
					return r, fmt.Errorf("set epochs=%d: at most %d", n, MaxEpochs)
				}
				r.Epochs = &n
			case "batch":
				if n > MaxBatch {
					return r, fmt.Errorf("set batch=%d: at most %d", n, MaxBatch)
				}
				r.Batch = &n
			case "max_samples":
				r.MaxSamples = &n
			}
		default:
			return r, fmt.Errorf("set %q: unknown key %q, want one of lr, clients, epochs, batch, max_samples", a, k)
		}
	}
	return r, nil
}

// SetRequest changes settings at the next round boundary. Nil fields stay.
type SetRequest struct {
	LR         *float64 `json:"lr,omitempty"`
	Clients    *int     `json:"clients,omitempty"`
	Epochs     *int     `json:"epochs,omitempty"`
	Batch      *int     `json:"batch,omitempty"`
	MaxSamples *int     `json:"max_samples,omitempty"`
}

func (r SetRequest) apply(st Settings) (Settings, error) {
	if r.LR != nil {
		st.LR = *r.LR
	}
	if r.Clients != nil {
		st.Clients = *r.Clients
	}
	if r.Epochs != nil {
		st.Epochs = *r.Epochs
	}
	if r.Batch != nil {
		st.Batch = *r.Batch
	}
	if r.MaxSamples != nil {
		st.MaxSamples = *r.MaxSamples
	}
	if err := st.Validate(""); err != nil {
		return st, err
	}
	return st.withDefaults(), nil
}
