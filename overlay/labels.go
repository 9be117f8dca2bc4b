package overlay

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseLabels reads a label list as users write it: comma-separated names
// and numeric ranges, e.g. "0-9", "0-4,7", "cat,dog". Duplicates are an
// error, as are reversed or huge ranges.
func ParseLabels(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(l string) error {
		if seen[l] {
			return fmt.Errorf("labels %q: %q listed twice", s, l)
		}
		seen[l] = true
		out = append(out, l)
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("labels %q: empty entry", s)
		}
		if lo, hi, ok := strings.Cut(part, "-"); ok {
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				if a < 0 || b < a || b-a >= 64 {
					return nil, fmt.Errorf("labels %q: range %q must be low-high with at most 64 values", s, part)
				}
				for i := a; i <= b; i++ {
					if err := add(strconv.Itoa(i)); err != nil {
						return nil, err
					}
				}
				continue
			}
		}
		if err := add(part); err != nil {
			return nil, err
		}
	}
	if len(out) > 64 {
		return nil, fmt.Errorf("labels %q: %d labels, at most 64 supported", s, len(out))
	}
	return out, nil
}
