package descriptors

import (
	"time"
)

// Kind names what a descriptor describes. Each kind has its own envelope
// payload type and signature domain (see envelope.go), so a signature made
// for one kind never verifies as another.
type Kind string

// The four kinds of the draft's control plane.
const (
	KindData    Kind = "data"    // a dataset a data owner holds
	KindModel   Kind = "model"   // a model a model owner or host offers
	KindCompute Kind = "compute" // compute a provider offers
	KindTestset Kind = "testset" // a held-out set an MPVU evaluates on
)

// Kinds lists every known kind in a fixed order.
var Kinds = []Kind{KindData, KindModel, KindCompute, KindTestset}

// Valid reports whether k is one of the four known kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindData, KindModel, KindCompute, KindTestset:
		return true
	}
	return false
}

// Header is common to every descriptor.
//
// The slot of a descriptor is (Owner, Kind, Name): a newer Seq in the same
// slot replaces an older one everywhere (DHT, gossip caches). Issued and
// Expires are whole seconds in UTC; Sign truncates them.
type Header struct {
	Kind    Kind      `json:"kind" cbor:"kind"`
	Owner   string    `json:"owner" cbor:"owner"` // peer ID (base58) of the signer
	Name    string    `json:"name" cbor:"name"`   // owner-chosen, stable across versions
	Seq     uint64    `json:"seq" cbor:"seq"`     // strictly increases per slot
	Issued  time.Time `json:"issued" cbor:"issued"`
	Expires time.Time `json:"expires" cbor:"expires"`
}

// Descriptor is one signed statement "this peer offers this thing".
// Exactly one of Data, Model, Compute, Testset is set, matching Header.Kind.
type Descriptor struct {
	Header
	Data    *Data    `json:"data,omitempty" cbor:"data,omitempty"`
	Model   *Model   `json:"model,omitempty" cbor:"model,omitempty"`
	Compute *Compute `json:"compute,omitempty" cbor:"compute,omitempty"`
	Testset *Testset `json:"testset,omitempty" cbor:"testset,omitempty"`

	// Sealed holds selective-disclosure commitments: field path (for example
	// "data.label_dist") -> SHA-256 over a salt, the path and the field's
	// canonical CBOR. The committed field itself is left empty in the
	// published descriptor and revealed later to a chosen peer (disclosure.go).
	Sealed map[string][]byte `json:"sealed,omitempty" cbor:"sealed,omitempty"`
}

// Field describes one input feature, label or output of a dataset or model.
type Field struct {
	Name  string `json:"name" cbor:"name"`
	Type  string `json:"type" cbor:"type"`                       // e.g. "uint8", "float32", "string", "class"
	Shape []int  `json:"shape,omitempty" cbor:"shape,omitempty"` // e.g. [28,28]; empty for scalars
}

// Price is what the owner asks. Amount is per Unit (e.g. "credit/epoch",
// "credit/query", "credit/cpu-hour"). Zero means free.
type Price struct {
	Amount float64 `json:"amount" cbor:"amount"`
	Unit   string  `json:"unit" cbor:"unit"`
}

// Policy says how a dataset (or model) may be used.
type Policy struct {
	// Mode is one of "open" (may be copied), "train-in-place" (models come to
	// the data, the data never leaves: the default for data) or "private"
	// (listed, but only for AllowPeers).
	Mode       string   `json:"mode" cbor:"mode"`
	AllowPeers []string `json:"allow_peers,omitempty" cbor:"allow_peers,omitempty"`
	Note       string   `json:"note,omitempty" cbor:"note,omitempty"`
}

// Policy modes.
const (
	PolicyOpen         = "open"
	PolicyTrainInPlace = "train-in-place"
	PolicyPrivate      = "private"
)

// Sketch is a MinHash content sketch: K 16-bit minima, packed little-endian
// in Mins (2*K bytes). Two sketches with the same Algo and K estimate the
// Jaccard overlap of the underlying sample sets: use (*Sketch).Jaccard.
type Sketch struct {
	Algo string `json:"algo" cbor:"algo"` // sketch.Algo, "minhash-blake3-b16/v1"
	K    int    `json:"k" cbor:"k"`
	Mins []byte `json:"mins" cbor:"mins"`
}

// Data describes a dataset. The facts (Samples, SizeBytes, LabelDist,
// Sketch, Updated) are computed from the data itself (descriptors/facts).
type Data struct {
	Task      string             `json:"task" cbor:"task"`                         // e.g. "digits-classification"
	Modality  string             `json:"modality" cbor:"modality"`                 // e.g. "image", "text", "tabular"
	Format    string             `json:"format,omitempty" cbor:"format,omitempty"` // "imagefolder", "csv", "jsonl", "mnist-idx"
	Samples   int64              `json:"samples" cbor:"samples"`
	SizeBytes int64              `json:"size_bytes" cbor:"size_bytes"`
	Features  []Field            `json:"features,omitempty" cbor:"features,omitempty"`
	Labels    []Field            `json:"labels,omitempty" cbor:"labels,omitempty"`
	LabelDist map[string]int64   `json:"label_dist,omitempty" cbor:"label_dist,omitempty"` // label -> sample count
	Quality   map[string]float64 `json:"quality,omitempty" cbor:"quality,omitempty"`       // e.g. "label_noise": 0.02
	Sketch    *Sketch            `json:"sketch,omitempty" cbor:"sketch,omitempty"`
	Updated   time.Time          `json:"updated" cbor:"updated"` // newest sample; age of information = now - Updated
	Policy    Policy             `json:"policy" cbor:"policy"`
	Price     *Price             `json:"price,omitempty" cbor:"price,omitempty"`
}

// Evaluation is a result an MPVU measured for a model on one of its test
// sets. Report, when present, is the MPVU's own signed envelope.
type Evaluation struct {
	Testset string    `json:"testset" cbor:"testset"` // testset descriptor slot id or name
	MPVU    string    `json:"mpvu" cbor:"mpvu"`       // peer ID of the evaluator
	Metric  string    `json:"metric" cbor:"metric"`   // e.g. "accuracy"
	Value   float64   `json:"value" cbor:"value"`
	At      time.Time `json:"at" cbor:"at"`
	Report  []byte    `json:"report,omitempty" cbor:"report,omitempty"`
}

// Hardware is what a model needs to run, or what a compute node has.
type Hardware struct {
	CPUCores    int    `json:"cpu_cores,omitempty" cbor:"cpu_cores,omitempty"`
	MemoryBytes int64  `json:"memory_bytes,omitempty" cbor:"memory_bytes,omitempty"`
	GPU         string `json:"gpu,omitempty" cbor:"gpu,omitempty"`
}

// Model describes a model. Skills are what an inference client asks for
// ("classify-digits"); Task ties it to datasets it can train on.
type Model struct {
	Version         string       `json:"version" cbor:"version"`
	Architecture    string       `json:"architecture" cbor:"architecture"` // e.g. "mlp-784-128-10"
	Params          int64        `json:"params,omitempty" cbor:"params,omitempty"`
	SizeBytes       int64        `json:"size_bytes,omitempty" cbor:"size_bytes,omitempty"`
	Task            string       `json:"task,omitempty" cbor:"task,omitempty"`
	Modality        string       `json:"modality,omitempty" cbor:"modality,omitempty"`
	Skills          []string     `json:"skills" cbor:"skills"`
	Inputs          []Field      `json:"inputs,omitempty" cbor:"inputs,omitempty"`
	Outputs         []Field      `json:"outputs,omitempty" cbor:"outputs,omitempty"`
	ClaimedAccuracy float64      `json:"claimed_accuracy,omitempty" cbor:"claimed_accuracy,omitempty"`
	Evaluations     []Evaluation `json:"evaluations,omitempty" cbor:"evaluations,omitempty"`
	LatencyMs       float64      `json:"latency_ms,omitempty" cbor:"latency_ms,omitempty"` // typical per query
	Needs           *Hardware    `json:"needs,omitempty" cbor:"needs,omitempty"`
	Price           *Price       `json:"price,omitempty" cbor:"price,omitempty"`
	WeightsRoot     string       `json:"weights_root,omitempty" cbor:"weights_root,omitempty"` // transfer root CID if shared
	Description     string       `json:"description,omitempty" cbor:"description,omitempty"`
	Policy          *Policy      `json:"policy,omitempty" cbor:"policy,omitempty"`
}

// GPU is one accelerator a compute node offers.
type GPU struct {
	Model       string `json:"model" cbor:"model"`
	MemoryBytes int64  `json:"memory_bytes" cbor:"memory_bytes"`
}

// Compute describes capacity a peer offers for training or hosting.
type Compute struct {
	CPUCores    int      `json:"cpu_cores" cbor:"cpu_cores"`
	MemoryBytes int64    `json:"memory_bytes" cbor:"memory_bytes"`
	GPUs        []GPU    `json:"gpus,omitempty" cbor:"gpus,omitempty"`
	Roles       []string `json:"roles,omitempty" cbor:"roles,omitempty"` // "compute", "host", "mpvu", "aggregator"
	// FreeCPU and FreeMemory are fractions in [0,1] at issue time; live
	// load travels in overlay beacons, not here.
	FreeCPU      float64 `json:"free_cpu" cbor:"free_cpu"`
	FreeMemory   float64 `json:"free_memory" cbor:"free_memory"`
	Availability string  `json:"availability,omitempty" cbor:"availability,omitempty"` // "always", or e.g. "weekdays 18:00-08:00 UTC"
	Price        *Price  `json:"price,omitempty" cbor:"price,omitempty"`
}

// Testset describes a held-out set an MPVU evaluates models on.
type Testset struct {
	Task      string           `json:"task" cbor:"task"`
	Tasks     []string         `json:"tasks,omitempty" cbor:"tasks,omitempty"` // further tasks it can evaluate
	Modality  string           `json:"modality,omitempty" cbor:"modality,omitempty"`
	Samples   int64            `json:"samples" cbor:"samples"`
	Metrics   []string         `json:"metrics,omitempty" cbor:"metrics,omitempty"` // e.g. ["accuracy"]
	LabelDist map[string]int64 `json:"label_dist,omitempty" cbor:"label_dist,omitempty"`
	Sketch    *Sketch          `json:"sketch,omitempty" cbor:"sketch,omitempty"`
	Updated   time.Time        `json:"updated" cbor:"updated"`
	Price     *Price           `json:"price,omitempty" cbor:"price,omitempty"`
}
