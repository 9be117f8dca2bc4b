package learn

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Architecture names registered by this package.
const (
	// MNIST2NN is the "2NN" of McMahan et al. 2017: 784-200-200-10, ReLU,
	// softmax; 199,210 parameters.
	MNIST2NN = "mnist-2nn"
	// LogReg is multinomial logistic regression on 28×28 images (784-10).
	LogReg = "logreg"
)

// Limits on architectures, so a header from a peer cannot describe a model
// that would exhaust memory.
const (
	MaxLayers = 16      // entries in Arch.Sizes
	MaxWidth  = 1 << 16 // units in one layer
	MaxParams = 1 << 24 // 16M parameters = 64 MiB of float32
)

// ErrUnknownArch is wrapped when an architecture name is not registered.
var ErrUnknownArch = errors.New("unknown architecture")

// Arch describes a fully connected network: Sizes[0] inputs, Sizes[len-1]
// classes, ReLU between hidden layers and softmax cross-entropy on top.
type Arch struct {
	Name  string
	Sizes []int
}

// NumParams is the number of weights and biases: for each layer, in*out + out.
func (a Arch) NumParams() int {
	n := 0
	for l := 1; l < len(a.Sizes); l++ {
		n += a.Sizes[l-1]*a.Sizes[l] + a.Sizes[l]
	}
	return n
}

// Inputs is the number of features a sample must have.
func (a Arch) Inputs() int { return a.Sizes[0] }

// Classes is the number of output classes.
func (a Arch) Classes() int { return a.Sizes[len(a.Sizes)-1] }

func (a Arch) String() string {
	s := make([]string, len(a.Sizes))
	for i, v := range a.Sizes {
		s[i] = fmt.Sprint(v)
	}
	return a.Name + "(" + strings.Join(s, "-") + ")"
}

func (a Arch) validate() error {
	if a.Name == "" || len(a.Name) > 64 {
		return fmt.Errorf("architecture name %q: must be 1..64 bytes", a.Name)
	}
	if len(a.Sizes) < 2 || len(a.Sizes) > MaxLayers {
		return fmt.Errorf("architecture %s: %d sizes, need 2..%d (inputs, hidden..., classes)", a.Name, len(a.Sizes), MaxLayers)
	}
	total := 0
	for i, s := range a.Sizes {
		if s < 1 || s > MaxWidth {
			return fmt.Errorf("architecture %s: layer %d has %d units, must be 1..%d", a.Name, i, s, MaxWidth)
		}
		if i > 0 {
			total += a.Sizes[i-1]*s + s
			if total > MaxParams {
				return fmt.Errorf("architecture %s: more than %d parameters", a.Name, MaxParams)
			}
		}
	}
	if a.Classes() < 2 {
		return fmt.Errorf("architecture %s: %d classes, need at least 2", a.Name, a.Classes())
	}
	return nil
}

func (a Arch) sameShape(b Arch) bool {
	if len(a.Sizes) != len(b.Sizes) {
		return false
	}
	for i := range a.Sizes {
		if a.Sizes[i] != b.Sizes[i] {
			return false
		}
	}
	return true
}

var registry = struct {
	sync.RWMutex
	m map[string]Arch
}{m: map[string]Arch{
	MNIST2NN: {Name: MNIST2NN, Sizes: []int{784, 200, 200, 10}},
	LogReg:   {Name: LogReg, Sizes: []int{784, 10}},
}}

// RegisterArch makes an architecture known under its name. Registering the
// same name again with the same shape is a no-op; with another shape it is
// an error (peers identify models by name, so a name must mean one shape).
func RegisterArch(a Arch) error {
	if err := a.validate(); err != nil {
		return fmt.Errorf("register architecture: %w", err)
	}
	a.Sizes = append([]int(nil), a.Sizes...)
	registry.Lock()
	defer registry.Unlock()
	if old, ok := registry.m[a.Name]; ok {
		if old.sameShape(a) {
			return nil
		}
		return fmt.Errorf("register architecture: %s is already registered as %s", a, old)
	}
	registry.m[a.Name] = a
	return nil
}

// LookupArch returns the registered architecture called name.
func LookupArch(name string) (Arch, error) {
	registry.RLock()
	a, ok := registry.m[name]
	registry.RUnlock()
	if !ok {
		return Arch{}, fmt.Errorf("%w %q: known are %s", ErrUnknownArch, name, strings.Join(ArchNames(), ", "))
	}
	a.Sizes = append([]int(nil), a.Sizes...)
	return a, nil
}

// ArchNames lists the registered architectures, sorted.
func ArchNames() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
