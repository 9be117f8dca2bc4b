package oam

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Public patterns are served without the token; everything else, including
// other methods on a public path, still needs it.
func TestHandlePublicBypassesOnlyItsPatterns(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	s, err := Listen("127.0.0.1:0", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.HandlePublic("GET /pub/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "public")
	}))
	s.Handle("GET /v1/secret", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "secret")
	})
	s.Start()
	t.Cleanup(func() { _ = s.Close() })

	do := func(method, path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+s.Addr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// Redirects are reported, not followed, so /pub shows its own answer.
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, path, token string
		code                int
		body                string
	}{
		{"GET", "/pub/x", "", 200, "public"},
		{"GET", "/pub", "", http.StatusTemporaryRedirect, "/pub/"},
		{"POST", "/pub/x", "", 401, "bearer token"},
		{"GET", "/v1/secret", "", 401, "bearer token"},
		{"GET", "/v1/secret", "wrong-token-wrong-token-wrong-token", 401, "bearer token"},
		{"GET", "/v1/secret", tok, 200, "secret"},
		{"GET", "/pub/../v1/secret", "", 401, "bearer token"},
	} {
		code, body := do(tc.method, tc.path, tc.token)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s (token %v): %d %q, want %d containing %q", tc.method, tc.path, tc.token != "", code, body, tc.code, tc.body)
		}
	}
}
