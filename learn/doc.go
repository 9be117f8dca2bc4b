// Package learn is daitn's model math: the networks that travel through a
// federation, local minibatch SGD, weighted federated averaging (FedAvg),
// evaluation, and the byte layout weights travel in. It does no I/O at all —
// no files, no network, no clocks, no goroutines left running — it takes
// values and returns numbers, so the train service, the MPVU and the
// benchmarks drive it and it is tested without a network. Everything is
// deterministic for a seed: initial weights are bit-identical everywhere, and
// training and averaging give bit-identical results on the same CPU
// architecture (the float32 kernels are gonum's SSE assembly on amd64 and
// plain Go elsewhere, which round differently in the last bits).
//
// # Models
//
// An architecture is a fully connected ReLU network with a softmax
// cross-entropy head, named in a registry: MNIST2NN ("mnist-2nn", the 2NN of
// McMahan et al. 2017, 784-200-200-10, 199,210 parameters) and LogReg
// ("logreg", 784-10). RegisterArch adds others; LookupArch and Unmarshal
// refuse names that are not registered (ErrUnknownArch). New(name, seed)
// builds a model with deterministic initial weights.
//
// # One round of FedAvg, as the train service runs it
//
//	global, _ := learn.New(learn.MNIST2NN, jobSeed)      // client: initial model
//	blob, _ := learn.Marshal(global)                      // → transfer, by CID
//
//	// on each data node:
//	m, err := learn.Unmarshal(blob)                       // bounded, validated
//	set, _ := dataset.ReadDir(dataDir)
//	res, err := learn.Train(ctx, m, learn.Data{X: set.X, Y: set.Y},
//		learn.TrainConfig{Epochs: 1, Batch: 10, LR: 0.05, Seed: roundSeed})
//	upd, _ := learn.Marshal(m)                            // → back to the aggregator
//
//	// on the aggregator, as each update arrives (read at most
//	// learn.EncodedSize(global.Arch) bytes from the peer):
//	m, err := learn.UnmarshalAs(upd, global.Arch.Name)
//	u := learn.Update{From: peerID, Params: m.Params, Weight: float64(samples)}
//	if err := learn.CheckUpdate(global.NumParams(), u); err != nil {
//		// exclude this node (errors.Is ErrShape / ErrNonFinite / ErrWeight); the round goes on
//	}
//	// optionally also drop finite outliers: learn.Distance(m.Params, global.Params)
//	params, err := learn.Average(global.NumParams(), accepted) // weighted by samples
//	global.Params = params
//
//	// on the MPVU:
//	ev, _ := learn.Evaluate(global, learn.Data{X: t10k.X, Y: t10k.Y}) // accuracy, loss
//
// Train is cancellable through ctx and leaves the model untouched on any
// error, including ErrDiverged when the learning rate is too high. Gradient
// returns the full-batch gradient (FedSGD). Predict classifies one sample.
//
// # Encoding
//
// Marshal writes a small header (magic, version, architecture name, layer
// sizes, parameter count) followed by the parameters as little-endian
// float32 in a fixed order, so parameter i is always at ParamsOffset+4i and a
// change to some weights changes only their bytes: content-defined chunking
// in transfer then moves only the chunks that changed. Unmarshal accepts at
// most MaxModelBytes (callers reading from a peer must cap the read at that
// size too), only registered architectures with their registered shape,
// exactly the announced parameters and only finite values; what it accepts
// re-marshals to the same bytes.
package learn
