// Command fedavg simulates the FedAvg paper's MNIST setting in one process
// with daitn's learn and dataset packages: K clients each holding one shard
// of real MNIST (IID or the pathological non-IID split), a fraction C of
// them chosen per round, E local epochs of minibatch SGD with batch B on
// each, weighted averaging, and test accuracy after every round. It prints
// the rounds to reach the target accuracy side by side with McMahan et al.
// 2017 and writes the accuracy-per-round curves as a PNG.
//
//	go run ./bench/fedavg -configs iid:1,noniid:1,iid:20,noniid:20 -max-rounds 1000
package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/learn"
)

// paper holds McMahan et al. 2017's rounds to 97% for the 2NN with C=0.1,
// B=10 where we are sure of them (Table 1, E=1); 0 = not quoted here.
var paper = map[string]int{"iid:1": 87, "noniid:1": 664}

type config struct {
	split  string // "iid" or "noniid"
	epochs int
}

func (c config) key() string { return fmt.Sprintf("%s:%d", c.split, c.epochs) }

type point struct {
	round    int
	acc      float64
	loss     float64
	train    time.Duration
	eval     time.Duration
	elapsed  time.Duration
	trainCPU float64 // process CPU seconds spent training (all workers)
	bytesOut int
}

type result struct {
	cfg     config
	lr      float64
	points  []point
	reached int // round the target was first reached, 0 if not
	stopped string
	wall    time.Duration
}

func main() {
	var (
		configs   = flag.String("configs", "iid:1,noniid:1,iid:20,noniid:20", "comma-separated split:E pairs (split is iid or noniid)")
		clients   = flag.Int("clients", 100, "number of clients K (each gets 60000/K samples)")
		frac      = flag.Float64("c", 0.1, "fraction C of clients per round")
		batch     = flag.Int("b", 10, "local minibatch size B (0 = whole shard)")
		lrs       = flag.String("lr", "0.05", "learning rate, or a comma-separated grid: each configuration runs with each and the table shows all")
		target    = flag.Float64("target", 0.97, "test accuracy to reach")
		maxRounds = flag.Int("max-rounds", 1000, "stop a configuration after this many rounds")
		maxTime   = flag.Duration("max-time", 20*time.Minute, "stop a configuration after this much wall time")
		extra     = flag.Int("extra", 0, "rounds to keep going after the target, for the curve")
		seed      = flag.Uint64("seed", 1, "seed for shards, client choice, init and shuffles")
		workers   = flag.Int("workers", runtime.GOMAXPROCS(0), "clients trained in parallel")
		pngPath   = flag.String("png", "docs/bench/fedavg.png", "accuracy-per-round plot (empty = none)")
		csvPath   = flag.String("csv", "", "write every round as CSV here (empty = none)")
		fromCSV   = flag.String("from-csv", "", "do not train: redraw the table and plot from comma-separated CSV files written by -csv (a later file's configuration replaces an earlier one's)")
	)
	flag.Parse()
	var cfgs []config
	for _, s := range strings.Split(*configs, ",") {
		split, e, ok := strings.Cut(strings.TrimSpace(s), ":")
		n, err := strconv.Atoi(e)
		if !ok || err != nil || n < 1 || (split != "iid" && split != "noniid") {
			log.Fatalf("-configs: %q is not split:E with split iid or noniid and E ≥ 1", s)
		}
		cfgs = append(cfgs, config{split: split, epochs: n})
	}
	var lrList []float64
	for _, s := range strings.Split(*lrs, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || v <= 0 {
			log.Fatalf("-lr: %q is not a positive number", s)
		}
		lrList = append(lrList, v)
	}
	if *clients < 1 || *frac <= 0 || *frac > 1 || *batch < 0 {
		log.Fatal("need -clients ≥ 1, 0 < -c ≤ 1, -b ≥ 0")
	}
	if *fromCSV != "" {
		results, err := readCSVs(strings.Split(*fromCSV, ","), *target)
		if err != nil {
			log.Fatal(err)
		}
		a, _ := learn.LookupArch(learn.MNIST2NN)
		report(results, *clients, *frac, *batch, *target, max(int(*frac*float64(*clients)+0.5), 1), learn.EncodedSize(a))
		if *pngPath != "" {
			if err := writePlot(*pngPath, results, *target); err != nil {
				log.Fatal(err)
			}
			fmt.Println("plot written to", *pngPath)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	dir, err := dataset.MNISTDir()
	if err != nil {
		log.Fatal(err)
	}
	train, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		log.Fatal(err)
	}
	testData := learn.Data{X: test.X, Y: test.Y}
	perRound := max(int(*frac*float64(*clients)+0.5), 1)
	probe, _ := learn.New(learn.MNIST2NN, *seed)
	modelBytes, _ := learn.Marshal(probe)
	fmt.Printf("FedAvg on MNIST, 2NN (%d parameters, %d bytes serialised), K=%d clients, C=%.2g (%d per round), B=%d, lr=%s, target %.2f%%, %d workers on %d CPUs\n",
		probe.NumParams(), len(modelBytes), *clients, *frac, perRound, *batch, *lrs, 100**target, *workers, runtime.NumCPU())

	var results []*result
	for _, cfg := range cfgs {
		for _, lr := range lrList {
			if ctx.Err() != nil {
				break
			}
			results = append(results, run(ctx, cfg, lr, train, testData, opts{
				clients: *clients, perRound: perRound, batch: *batch, target: *target, maxRounds: *maxRounds,
				maxTime: *maxTime, extra: *extra, seed: *seed, workers: *workers, modelBytes: len(modelBytes),
			}))
		}
	}
	report(results, *clients, *frac, *batch, *target, perRound, len(modelBytes))
	if *csvPath != "" {
		if err := writeCSV(*csvPath, results); err != nil {
			log.Fatal(err)
		}
	}
	if *pngPath != "" && len(results) > 0 {
		if err := writePlot(*pngPath, results, *target); err != nil {
			log.Fatal(err)
		}
		fmt.Println("plot written to", *pngPath)
	}
}

type opts struct {
	clients, perRound, batch  int
	target                    float64
	maxRounds, extra, workers int
	maxTime                   time.Duration
	seed                      uint64
	modelBytes                int
}

func run(ctx context.Context, cfg config, lr float64, train *dataset.Set, testData learn.Data, o opts) *result {
	var err error
	shards := make([]learn.Data, o.clients)
	for k := range shards {
		var s *dataset.Set
		if cfg.split == "iid" {
			s, err = dataset.ShardIID(train, k, o.clients, o.seed)
		} else {
			s, err = dataset.ShardNonIID(train, k, o.clients, o.seed)
		}
		if err != nil {
			log.Fatal(err)
		}
		shards[k] = learn.Data{X: s.X, Y: s.Y}
	}
	res := &result{cfg: cfg, lr: lr}
	global, _ := learn.New(learn.MNIST2NN, o.seed)
	start := time.Now()
	for round := 1; round <= o.maxRounds; round++ {
		if ctx.Err() != nil {
			res.stopped = "interrupted"
			break
		}
		if time.Since(start) > o.maxTime {
			res.stopped = fmt.Sprintf("time cap %s", o.maxTime)
			break
		}
		pick := rand.New(rand.NewPCG(o.seed, uint64(round))).Perm(o.clients)[:o.perRound]
		t0, c0 := time.Now(), processCPU()
		updates := make([]learn.Update, o.perRound)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		sem := make(chan struct{}, o.workers)
		for i, k := range pick {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				local := global.Clone()
				_, err := learn.Train(ctx, local, shards[k], learn.TrainConfig{
					Epochs: cfg.epochs, Batch: o.batch, LR: float32(lr),
					Seed: o.seed ^ uint64(round)<<20 ^ uint64(k),
				})
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				updates[i] = learn.Update{From: fmt.Sprint("client-", k), Params: local.Params, Weight: float64(shards[k].Len())}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			res.stopped = firstErr.Error()
			break
		}
		avg, err := learn.Average(global.NumParams(), updates)
		if err != nil {
			log.Fatal(err)
		}
		global.Params = avg
		t1, c1 := time.Now(), processCPU()
		ev, err := learn.Evaluate(global, testData)
		if err != nil {
			log.Fatal(err)
		}
		t2 := time.Now()
		p := point{round: round, acc: ev.Accuracy, loss: ev.Loss, train: t1.Sub(t0), eval: t2.Sub(t1), elapsed: t2.Sub(start),
			trainCPU: c1 - c0, bytesOut: 2 * o.perRound * o.modelBytes}
		res.points = append(res.points, p)
		if res.reached == 0 && ev.Accuracy >= o.target {
			res.reached = round
		}
		if round == 1 || round%10 == 0 || res.reached == round {
			fmt.Printf("  %-9s lr %-5g round %4d  acc %.4f  loss %.4f  train %6.2fs (cpu %6.2fs)  eval %5.2fs  elapsed %s\n",
				cfg.key(), lr, round, ev.Accuracy, ev.Loss, p.train.Seconds(), p.trainCPU, p.eval.Seconds(), p.elapsed.Round(time.Second))
		}
		if res.reached != 0 && round >= res.reached+o.extra {
			break
		}
	}
	res.wall = time.Since(start)
	status := "reached"
	if res.reached == 0 {
		status = "NOT reached (" + firstNonEmpty(res.stopped, fmt.Sprintf("round cap %d", o.maxRounds)) + ")"
	}
	fmt.Printf("%s lr %g: target %s after %d rounds, %s\n", cfg.key(), lr, status, len(res.points), res.wall.Round(time.Second))
	return res
}

func report(results []*result, clients int, frac float64, batch int, target float64, perRound, modelBytes int) {

	fmt.Printf("\nRounds to %.0f%% test accuracy, 2NN, K=%d, C=%.2g, B=%d (paper: McMahan et al. 2017, Table 1, best learning rate of a grid)\n", 100*target, clients, frac, batch)
	fmt.Printf("%-8s %3s %6s %8s %8s %10s %14s %14s %14s %10s\n", "split", "E", "lr", "rounds", "paper", "best acc", "train s/round", "cpu s/round", "eval s/round", "wall")
	for _, r := range results {
		rounds := "—"
		if r.reached > 0 {
			rounds = strconv.Itoa(r.reached)
		} else {
			rounds = fmt.Sprintf(">%d", len(r.points))
		}
		pp := "?"
		if n, ok := paper[r.cfg.key()]; ok && clients == 100 && frac == 0.1 && batch == 10 && target == 0.97 {
			pp = strconv.Itoa(n)
		}
		var best float64
		var tr, evd time.Duration
		var cpu float64
		for _, p := range r.points {
			best = max(best, p.acc)
			tr += p.train
			evd += p.eval
			cpu += p.trainCPU
		}
		n := float64(max(len(r.points), 1))
		cpuCol := "—" // not recorded (CSV from an older run)
		if cpu > 0 {
			cpuCol = fmt.Sprintf("%.2f", cpu/n)
		}
		fmt.Printf("%-8s %3d %6g %8s %8s %10.4f %14.2f %14s %14.2f %10s\n", r.cfg.split, r.cfg.epochs, r.lr, rounds, pp, best,
			tr.Seconds()/n, cpuCol, evd.Seconds()/n, r.wall.Round(time.Second))
	}
	fmt.Printf("bytes per round if the full model goes both ways: %d clients × 2 × %d B = %d B\n", perRound, modelBytes, 2*perRound*modelBytes)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeCSV(path string, results []*result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"split", "E", "lr", "round", "accuracy", "loss", "train_s", "eval_s", "train_cpu_s"})
	for _, r := range results {
		for _, p := range r.points {
			w.Write([]string{r.cfg.split, strconv.Itoa(r.cfg.epochs), fmt.Sprint(r.lr), strconv.Itoa(p.round),
				fmt.Sprintf("%.4f", p.acc), fmt.Sprintf("%.4f", p.loss), fmt.Sprintf("%.3f", p.train.Seconds()), fmt.Sprintf("%.3f", p.eval.Seconds()), fmt.Sprintf("%.3f", p.trainCPU)})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readCSVs loads rounds written by writeCSV. A configuration (split, E, lr)
// found in a later file replaces the same one from earlier files, so a
// longer re-run of one configuration can be merged with an earlier full run.
func readCSVs(paths []string, target float64) ([]*result, error) {
	var order []string
	byKey := map[string]*result{}
	for _, path := range paths {
		f, err := os.Open(strings.TrimSpace(path))
		if err != nil {
			return nil, err
		}
		cr := csv.NewReader(f)
		cr.FieldsPerRecord = -1
		rows, err := cr.ReadAll()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		seen := map[string]bool{}
		for i, row := range rows {
			if i == 0 {
				continue // header
			}
			if len(row) < 8 {
				return nil, fmt.Errorf("%s line %d: %d fields, want 8", path, i+1, len(row))
			}
			e, err1 := strconv.Atoi(row[1])
			lr, err2 := strconv.ParseFloat(row[2], 64)
			round, err3 := strconv.Atoi(row[3])
			acc, err4 := strconv.ParseFloat(row[4], 64)
			loss, err5 := strconv.ParseFloat(row[5], 64)
			tr, err6 := strconv.ParseFloat(row[6], 64)
			ev, err7 := strconv.ParseFloat(row[7], 64)
			for _, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
				if err != nil {
					return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
				}
			}
			key := fmt.Sprintf("%s:%d:%g", row[0], e, lr)
			if !seen[key] {
				seen[key] = true
				if _, ok := byKey[key]; !ok {
					order = append(order, key)
				}
				byKey[key] = &result{cfg: config{split: row[0], epochs: e}, lr: lr}
			}
			r := byKey[key]
			p := point{round: round, acc: acc, loss: loss, train: time.Duration(tr * 1e9), eval: time.Duration(ev * 1e9)}
			if len(row) > 8 { // train_cpu_s, absent from older files
				p.trainCPU, _ = strconv.ParseFloat(row[8], 64)
			}
			r.points = append(r.points, p)
			r.wall += p.train + p.eval
			if r.reached == 0 && acc >= target {
				r.reached = round
			}
		}
	}
	out := make([]*result, 0, len(order))
	for _, k := range order {
		out = append(out, byKey[k])
	}
	return out, nil
}

func writePlot(path string, results []*result, target float64) error {
	p := plot.New()
	p.Title.Text = "FedAvg, MNIST 2NN: test accuracy per round"
	p.X.Label.Text = "communication round"
	p.Y.Label.Text = "test accuracy"
	p.Y.Min, p.Y.Max = 0.85, 1.0
	p.Add(plotter.NewGrid())
	colors := []color.Color{
		color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 214, G: 39, B: 40, A: 255},
		color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 255, G: 127, B: 14, A: 255},
		color.RGBA{R: 148, G: 103, B: 189, A: 255}, color.RGBA{R: 140, G: 86, B: 75, A: 255},
	}
	maxRound := 1
	for i, r := range results {
		pts := make(plotter.XYs, len(r.points))
		for j, q := range r.points {
			pts[j].X, pts[j].Y = float64(q.round), max(q.acc, 0.85)
			maxRound = max(maxRound, q.round)
		}
		if len(pts) == 0 {
			continue
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = colors[i%len(colors)]
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("%s E=%d lr=%g", r.cfg.split, r.cfg.epochs, r.lr), line)
	}
	tl, _ := plotter.NewLine(plotter.XYs{{X: 0, Y: target}, {X: float64(maxRound), Y: target}})
	tl.Color = color.Gray{Y: 100}
	tl.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(tl)
	p.Legend.Add(fmt.Sprintf("target %.0f%%", 100*target), tl)
	p.Legend.Top = false
	p.Legend.Left = false
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
