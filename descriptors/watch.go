package descriptors

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/daitn/daitn/descriptors/facts"
)

// Watch is a data path whose facts back a data descriptor. The service
// polls its fingerprint (file count, size, newest mtime: cheap) and, when it
// changes, recomputes the facts and publishes the next version.
type Watch struct {
	Path        string `cbor:"path" json:"path"`
	Format      string `cbor:"format,omitempty" json:"format,omitempty"`
	LabelColumn string `cbor:"label_column,omitempty" json:"label_column,omitempty"`
	Fingerprint string `cbor:"fingerprint" json:"fingerprint"`
}

// DataFromPath computes the facts of the data at path and fills them into a
// copy of tmpl (kind data; tmpl supplies name, task, modality, policy,
// price). The user's word is not taken for samples, size, label
// distribution, sketch or last update: they are measured. The name defaults
// to the path's base name, the policy to train-in-place.
func DataFromPath(path string, tmpl *Descriptor, o facts.Options) (*Descriptor, *Watch, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("data %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, nil, fmt.Errorf("data path %s: %w", path, err)
	}
	fp, err := facts.Fingerprint(abs)
	if err != nil {
		return nil, nil, fmt.Errorf("data path %s: %w", path, err)
	}
	f, err := facts.Compute(abs, o)
	if err != nil {
		return nil, nil, err
	}
	d := &Descriptor{}
	if tmpl != nil {
		if d, err = cloneDescriptor(tmpl); err != nil {
			return nil, nil, err
		}
	}
	if d.Kind == "" {
		d.Kind = KindData
	}
	if d.Kind != KindData {
		return nil, nil, fmt.Errorf("data path %s: %w", path, &FieldError{Field: "kind", Value: string(d.Kind), Want: "data", Err: ErrKindMismatch})
	}
	if d.Name == "" {
		d.Name = filepath.Base(abs)
	}
	if d.Data == nil {
		d.Data = &Data{}
	}
	dd := d.Data
	dd.Format = f.Format
	dd.Samples = f.Samples
	dd.SizeBytes = f.SizeBytes
	dd.LabelDist = f.LabelDist
	dd.Sketch = SketchOf(f.Sketch)
	dd.Updated = f.Updated
	if dd.Policy.Mode == "" {
		dd.Policy.Mode = PolicyTrainInPlace
	}
	if len(dd.Features) == 0 {
		switch {
		case f.Rows > 0:
			dd.Features = []Field{{Name: "image", Type: "uint8", Shape: []int{f.Rows, f.Cols}}}
		case len(f.Columns) > 0 && len(f.Columns) <= 64:
			for _, c := range f.Columns {
				dd.Features = append(dd.Features, Field{Name: c, Type: "value"})
			}
		case f.Cols > 0:
			dd.Features = []Field{{Name: "features", Type: "value", Shape: []int{f.Cols}}}
		}
	}
	if len(dd.Labels) == 0 {
		lc := o.LabelColumn
		if lc == "" {
			lc = "label"
		}
		dd.Labels = []Field{{Name: lc, Type: "class", Shape: []int{len(f.LabelDist)}}}
	}
	return d, &Watch{Path: abs, Format: o.Format, LabelColumn: o.LabelColumn, Fingerprint: fp}, nil
}

// PublishData measures the data at path, publishes it as a data descriptor
// (tmpl supplies name, task, modality, policy, price) and keeps watching the
// path: when the data changes on disk the descriptor is re-measured and
// republished. This is what `daitn data add` does, and the hook for other
// commands that publish a directory of data.
func (s *Service) PublishData(ctx context.Context, path string, tmpl *Descriptor, o facts.Options, opts ...PublishOption) (*Signed, error) {
	d, w, err := DataFromPath(path, tmpl, o)
	if err != nil {
		return nil, err
	}
	pc := publishConfig{watch: w}
	for _, op := range opts {
		if op == nil {
			continue
		}
		if err := op(&pc); err != nil {
			return nil, err
		}
	}
	return s.publish(ctx, d, pc)
}

// UpdateData re-measures the watched path of our data descriptor name now
// (`daitn data update`) and publishes the next version; it republishes even
// if nothing changed, which refreshes the issue time.
func (s *Service) UpdateData(ctx context.Context, name string) (*Signed, error) {
	slot := SlotID(s.self, KindData, name)
	s.mu.Lock()
	r := s.own[slot]
	s.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("update data %q: %w: no data descriptor of ours by that name", name, ErrNotFound)
	}
	if r.Watch == nil {
		return s.publish(ctx, &r.Template, publishConfig{})
	}
	return s.remeasure(ctx, r)
}

func (s *Service) remeasure(ctx context.Context, r *ownRecord) (*Signed, error) {
	w := r.Watch
	tmpl := r.Template
	d, nw, err := DataFromPath(w.Path, &tmpl, facts.Options{Format: w.Format, LabelColumn: w.LabelColumn})
	if err != nil {
		return nil, fmt.Errorf("update data %q: %w", tmpl.Name, err)
	}
	// Facts are always re-measured, so clear the measured fields first.
	return s.publish(ctx, d, publishConfig{watch: nw})
}

// checkWatches re-measures watched paths whose fingerprint changed.
func (s *Service) checkWatches(now time.Time) {
	s.mu.Lock()
	var due []*ownRecord
	for _, r := range s.own {
		if r.Watch != nil && now.Sub(r.lastCheck) >= s.cfg.WatchInterval {
			r.lastCheck = now
			due = append(due, r)
		}
	}
	s.mu.Unlock()
	for _, r := range due {
		fp, err := facts.Fingerprint(r.Watch.Path)
		if err != nil {
			s.log.Warn("watch data path", "path", r.Watch.Path, "err", err)
			continue
		}
		if fp == r.Watch.Fingerprint {
			continue
		}
		sd, err := s.remeasure(s.ctx, r)
		if err != nil {
			s.log.Warn("re-measure changed data", "path", r.Watch.Path, "err", err)
			continue
		}
		s.log.Info("data changed on disk; republished", "name", sd.Name, "seq", sd.Seq, "samples", sd.Data.Samples)
	}
}
