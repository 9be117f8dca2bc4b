package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/train"
)

// demoSkill is the skill the demo's trained model is served under.
const demoSkill = "classify-digits"

// demoInfer closes the demo's loop: the client's node publishes the model it
// trained and serves it, and the MPVU's node asks it, over
// /daitn/infer/1.0.0, to classify MNIST test digits. The MPVU finds the host
// through the model's descriptor in the DHT, not by being told.
func demoInfer(ctx context.Context, w io.Writer, log *slog.Logger, asker, hostNode *demoNode, j *train.Job, digits int) error {
	sd, err := hostNode.st.Desc.Publish(ctx, &descriptors.Descriptor{
		Header: descriptors.Header{Kind: descriptors.KindModel, Name: "mnist-2nn-demo"},
		Model: &descriptors.Model{Version: "1", Architecture: learn.MNIST2NN, Skills: []string{demoSkill},
			Task: train.DefaultTask, Modality: "image", ClaimedAccuracy: j.Accuracy, LatencyMs: 1, WeightsRoot: j.Model},
	})
	if err != nil {
		return fmt.Errorf("publish the trained model: %w", err)
	}
	// Publishing returns once the descriptor is stored here and on its way
	// out; wait until the MPVU can look it up, as any asker would.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := asker.st.Desc.Get(ctx, sd.Slot); err == nil {
			break
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the MPVU cannot find the published model %s: %w", sd.Slot, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hostSvc, err := infer.New(ctx, hostNode.nd.Host(), hostNode.st.Desc, hostNode.st.Xfer, infer.WithLogger(log))
	if err != nil {
		return err
	}
	defer hostSvc.Close()
	askSvc, err := infer.New(ctx, asker.nd.Host(), asker.st.Desc, asker.st.Xfer, infer.WithLogger(log))
	if err != nil {
		return err
	}
	defer askSvc.Close()
	dir, err := dataset.MNISTDir()
	if err != nil {
		return err
	}
	test, err := dataset.ReadSetHead(dir, dataset.TestPrefix, digits)
	if err != nil {
		return err
	}
	dim := test.Dim()
	input := make([]byte, 4*dim)
	correct := 0
	var took []time.Duration
	for i := range test.Len() {
		for k, v := range test.X[i*dim : (i+1)*dim] {
			binary.LittleEndian.PutUint32(input[4*k:], math.Float32bits(v))
		}
		res, err := askSvc.QueryModel(ctx, sd.Slot.String(), input)
		if err != nil {
			return fmt.Errorf("digit %d: %w", i, err)
		}
		if res.Class == int(test.Y[i]) {
			correct++
		}
		took = append(took, res.Took)
	}
	slices.Sort(took)
	fmt.Fprintf(w, "inference: the MPVU asked the served model (%s, skill %s) about %d MNIST test digits over /daitn/infer: %.1f%% correct, p50 %s per query\n",
		sd.Slot, demoSkill, test.Len(), 100*float64(correct)/float64(test.Len()), took[len(took)/2].Round(time.Microsecond))
	return nil
}
