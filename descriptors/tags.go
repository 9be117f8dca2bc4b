package descriptors

import (
	"sort"
	"strings"

	"github.com/ipfs/go-cid"
)

// Tag builds a canonical capability tag "<scope>/<key>=<value>" (or
// "<key>=<value>" with an empty scope). Values are trimmed and lower-cased
// so "Digits-Classification" and "digits-classification" meet at one key.
func Tag(scope, key, value string) string {
	v := strings.ToLower(strings.TrimSpace(value))
	if scope == "" {
		return key + "=" + v
	}
	return scope + "/" + key + "=" + v
}

// CapabilityKey is the DHT provider key of a tag: a CIDv1 (raw codec,
// sha2-256) of the tag string. Holders Provide it, seekers FindProviders it.
func CapabilityKey(tag string) cid.Cid { return rawCID(tag) }

// Tags returns the canonical capability tags a descriptor is findable by,
// sorted: always "kind=<kind>", then per kind:
//
//	data:    data/task=, data/modality=, data/format=
//	model:   model/skill= (each), model/task=, model/arch=
//	compute: role=<r> for each role (default role=compute)
//	testset: role=mpvu, testset/task= (each task)
func (d *Descriptor) Tags() []string {
	if d == nil {
		return nil
	}
	set := map[string]bool{Tag("", "kind", string(d.Kind)): true}
	add := func(scope, key, v string) {
		if strings.TrimSpace(v) != "" {
			set[Tag(scope, key, v)] = true
		}
	}
	switch {
	case d.Kind == KindData && d.Data != nil:
		add("data", "task", d.Data.Task)
		add("data", "modality", d.Data.Modality)
		add("data", "format", d.Data.Format)
	case d.Kind == KindModel && d.Model != nil:
		for _, s := range d.Model.Skills {
			add("model", "skill", s)
		}
		add("model", "task", d.Model.Task)
		add("model", "arch", d.Model.Architecture)
	case d.Kind == KindCompute && d.Compute != nil:
		if len(d.Compute.Roles) == 0 {
			add("", "role", "compute")
		}
		for _, r := range d.Compute.Roles {
			add("", "role", r)
		}
	case d.Kind == KindTestset && d.Testset != nil:
		add("", "role", "mpvu")
		add("testset", "task", d.Testset.Task)
		for _, t := range d.Testset.Tasks {
			add("testset", "task", t)
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
