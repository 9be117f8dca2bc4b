package transfer

import (
	"encoding/json"
	"fmt"

	"github.com/ipfs/go-cid"
)

// CID is a cid.Cid that reads and writes JSON as its string form
// ("bafy..."), like every other CID in daitn's API and CLI output, not as
// go-cid's {"/": "..."} object.
type CID struct{ cid.Cid }

// MarshalJSON writes the CID's string form ("" when undefined).
func (c CID) MarshalJSON() ([]byte, error) {
	if !c.Defined() {
		return []byte(`""`), nil
	}
	return json.Marshal(c.String())
}

// UnmarshalJSON reads a CID string; "" and null leave it undefined.
func (c *CID) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("cid: want a string: %w", err)
	}
	if s == nil || *s == "" {
		c.Cid = cid.Undef
		return nil
	}
	v, err := cid.Decode(*s)
	if err != nil {
		return fmt.Errorf("cid %q: %w", *s, err)
	}
	c.Cid = v
	return nil
}
