package oam

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotRunning is returned by Dial when the data directory has no running node.
var ErrNotRunning = errors.New("no running node for this data directory (start one with `daitn up`)")

// Client talks to a running node's control API.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// Dial finds the node running on dataDir from the files it keeps there.
func Dial(dataDir string) (*Client, error) {
	addr, tok, err := Endpoint(dataDir)
	if err != nil {
		return nil, err
	}
	return NewClient(addr, tok), nil
}

// Endpoint reads the API address (host:port) and token of the node running
// on dataDir. The address file is left behind by a node that was killed, so
// a caller that must know the node is up asks it something.
func Endpoint(dataDir string) (addr, token string, err error) {
	a, err := os.ReadFile(filepath.Join(dataDir, AddrFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", fmt.Errorf("%w: %s has no %s", ErrNotRunning, dataDir, AddrFile)
		}
		return "", "", fmt.Errorf("read api address: %w", err)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, TokenFile))
	if err != nil {
		return "", "", fmt.Errorf("read api token: %w", err)
	}
	return strings.TrimSpace(string(a)), strings.TrimSpace(string(tok)), nil
}

// NewClient returns a client for the API at addr (host:port) with token.
func NewClient(addr, token string) *Client {
	return &Client{base: "http://" + addr, token: token, hc: &http.Client{}}
}

// APIError is a non-2xx answer from the node.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("node answered %d: %s", e.Status, e.Message) }

// Call sends in (if non-nil) as JSON and decodes the answer into out (if non-nil).
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Do sends a raw request and returns the response if it is 2xx; the caller
// closes its body. Non-2xx answers become *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is the node running?)", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// Stream reads server-sent events from path and calls fn for each until fn
// returns an error, the stream ends or ctx is done. io.EOF from fn stops the
// stream without error.
func (c *Client) Stream(ctx context.Context, path string, fn func(Event) error) error {
	resp, err := c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):]...)
		case line == "" && len(data) > 0:
			var ev Event
			var raw struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(data, &raw); err == nil {
				_ = json.Unmarshal(data, &ev)
				ev.Data = raw.Data
				if err := fn(ev); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
			data = data[:0]
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}
