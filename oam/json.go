package oam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Error is the JSON body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// WriteJSON writes v with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes err as {"error": "..."} with the given status.
func WriteError(w http.ResponseWriter, status int, err error) {
	WriteJSON(w, status, Error{Error: err.Error()})
}

// ReadJSON decodes at most limit bytes of the request body into v, rejecting
// unknown fields and trailing data so typos in requests are reported.
func ReadJSON(r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(nil, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body larger than %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("request body is empty, want a JSON object")
		}
		return fmt.Errorf("decode request body: %w", err)
	}
	if dec.More() {
		return errors.New("request body has data after the JSON object")
	}
	return nil
}
