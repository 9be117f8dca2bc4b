package learn_test

import (
	"errors"
	"fmt"

	"github.com/daitn/daitn/learn"
)

// Two clients' models averaged with their sample counts as weights.
func ExampleAverage() {
	a := learn.Update{From: "node-a", Params: []float32{0, 4}, Weight: 300}
	b := learn.Update{From: "node-b", Params: []float32{4, 0}, Weight: 100}
	avg, err := learn.Average(2, []learn.Update{a, b})
	fmt.Println(avg, err)

	bad := learn.Update{From: "node-c", Params: []float32{1}, Weight: 50}
	_, err = learn.Average(2, []learn.Update{a, bad})
	fmt.Println(err)
	// Output:
	// [1 3] <nil>
	// average: update 1 from node-c: wrong number of parameters: 1, the model has 2
}

func ExampleNew() {
	m, _ := learn.New(learn.MNIST2NN, 42)
	b, _ := learn.Marshal(m)
	fmt.Println(m.Arch, m.NumParams(), len(b))
	_, err := learn.New("resnet", 1)
	fmt.Println(errors.Is(err, learn.ErrUnknownArch))
	// Output:
	// mnist-2nn(784-200-200-10) 199210 796881
	// true
}
