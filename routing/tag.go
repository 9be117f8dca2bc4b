package routing

import (
	"fmt"
	"math"
)

// Settings are the federated algorithm's knobs. Zero means "unset": TAG
// fills it with a default.
type Settings struct {
	// Algorithm is "fedavg" (default) or "fedsgd" (one full-batch step per
	// round: E=1, B=-1).
	Algorithm string `json:"algorithm,omitempty" toml:"algorithm"`
	// C is the fraction of planned datasets trained on per round.
	C float64 `json:"c,omitempty" toml:"c"`
	// E is local epochs per round.
	E int `json:"e,omitempty" toml:"e"`
	// B is the local minibatch size; -1 means the whole local dataset.
	B int `json:"b,omitempty" toml:"b"`
	// LR is the local SGD learning rate.
	LR float64 `json:"lr,omitempty" toml:"lr"`
	// Rounds is the most rounds to run (the target accuracy may stop it
	// earlier).
	Rounds int `json:"rounds,omitempty" toml:"rounds"`
	// ClientsPerRound is K = max(1, round(C * datasets)), filled by TAG.
	ClientsPerRound int `json:"clients_per_round,omitempty" toml:"clients_per_round"`
}

// FedAvg defaults from McMahan et al. 2017, "Communication-Efficient
// Learning of Deep Networks from Decentralized Data": C=0.1 and E=5, B=10
// are the settings the paper reports as a good trade-off for the MNIST 2NN
// (784-200-200-10); its learning rates were tuned per setting and fell
// around 0.05-0.2 for the 2NN, so 0.1 is the middle of that range.
// DefaultRounds is ours: enough for the 2NN to pass 97% on IID MNIST shards.
const (
	DefaultAlgorithm = "fedavg"
	DefaultC         = 0.1
	DefaultE         = 5
	DefaultB         = 10
	DefaultLR        = 0.1
	DefaultRounds    = 100
)

func (s Settings) check() (Settings, error) {
	switch s.Algorithm {
	case "", "fedavg", "fedsgd":
	default:
		return s, fmt.Errorf("job field settings.algorithm=%q: want fedavg or fedsgd", s.Algorithm)
	}
	switch {
	case s.C < 0 || s.C > 1 || math.IsNaN(s.C):
		return s, fmt.Errorf("job field settings.c=%v: want a fraction in (0,1]", s.C)
	case s.E < 0 || s.E > 1000:
		return s, fmt.Errorf("job field settings.e=%d: want 1..1000 local epochs", s.E)
	case s.B < -1 || s.B > 1<<20:
		return s, fmt.Errorf("job field settings.b=%d: want a batch size >= 1, or -1 for the whole local set", s.B)
	case s.LR < 0 || s.LR > 10 || math.IsNaN(s.LR):
		return s, fmt.Errorf("job field settings.lr=%v: want a learning rate in (0,10]", s.LR)
	case s.Rounds < 0 || s.Rounds > 1_000_000:
		return s, fmt.Errorf("job field settings.rounds=%d: want 1..1000000", s.Rounds)
	case s.ClientsPerRound < 0:
		return s, fmt.Errorf("job field settings.clients_per_round=%d: must be >= 0", s.ClientsPerRound)
	}
	return s, nil
}

// TAG (training algorithm and hyper-parameter selection) completes a job's
// settings for a plan of n datasets: unset values take the FedAvg paper's
// defaults, K = max(1, round(C*n)) unless the job fixed K, in which case C
// follows from it. Notes say what was filled in, for the job's log.
func TAG(job JobSpec, n int) (Settings, []string, error) {
	s, err := job.Settings.check()
	if err != nil {
		return s, nil, err
	}
	if n < 0 {
		return s, nil, fmt.Errorf("tag: dataset count %d: must be >= 0", n)
	}
	var notes []string
	fill := func(name string, unset bool, set func(), v any) {
		if unset {
			set()
			notes = append(notes, fmt.Sprintf("%s=%v (default)", name, v))
		}
	}
	fill("algorithm", s.Algorithm == "", func() { s.Algorithm = DefaultAlgorithm }, DefaultAlgorithm)
	if s.Algorithm == "fedsgd" {
		if s.E != 0 && s.E != 1 || s.B != 0 && s.B != -1 {
			return s, nil, fmt.Errorf("job settings: fedsgd means e=1 and b=-1 (whole local set), got e=%d b=%d", s.E, s.B)
		}
		s.E, s.B = 1, -1
	}
	fill("e", s.E == 0, func() { s.E = DefaultE }, DefaultE)
	fill("b", s.B == 0, func() { s.B = DefaultB }, DefaultB)
	fill("lr", s.LR == 0, func() { s.LR = DefaultLR }, DefaultLR)
	fill("rounds", s.Rounds == 0, func() { s.Rounds = DefaultRounds }, DefaultRounds)
	k := s.ClientsPerRound
	if k == 0 {
		k = job.ClientsPerRound
	}
	switch {
	case k > 0:
		if n > 0 && k > n {
			return s, nil, fmt.Errorf("job field clients_per_round=%d: only %d datasets are planned", k, n)
		}
		s.ClientsPerRound = k
		if s.C == 0 && n > 0 {
			s.C = float64(k) / float64(n)
			notes = append(notes, fmt.Sprintf("c=%.3g (from clients_per_round %d of %d datasets)", s.C, k, n))
		}
	default:
		fill("c", s.C == 0, func() { s.C = DefaultC }, DefaultC)
		s.ClientsPerRound = max(1, int(math.Round(s.C*float64(n))))
		if n == 0 {
			s.ClientsPerRound = 0
		}
		notes = append(notes, fmt.Sprintf("clients_per_round=%d (c=%.3g of %d datasets)", s.ClientsPerRound, s.C, n))
	}
	return s, notes, nil
}
