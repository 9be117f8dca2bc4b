package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Result()
}

func TestHandlerServesFilesWithTypesAndHeaders(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype, body string
	}{
		{"/ui/", "text/html", "<title>daitn dashboard</title>"},
		{"/ui/app.js", "text/javascript", "takeToken"},
		{"/ui/style.css", "text/css", "--accent"},
	} {
		resp := get(t, h, tc.path)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.body) {
			t.Errorf("GET %s: %d %q, body has %q: %v; want 200 %s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.body, strings.Contains(string(b), tc.body), tc.ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want the page kept to its origin", tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", tc.path)
		}
	}
	if resp := get(t, h, "/ui/nope.js"); resp.StatusCode != 404 {
		t.Errorf("GET /ui/nope.js: %d, want 404", resp.StatusCode)
	}
}

// The page must work offline: nothing in it may name another host. The
// SVG namespace is an identifier, not a fetch.
func TestNoExternalFetches(t *testing.T) {
	ext := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		for _, m := range ext.FindAllString(string(b), -1) {
			if m != "http://www.w3.org" {
				t.Errorf("%s names another host: %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every file the page loads (script modules, the style sheet) is embedded.
func TestReferencedFilesExist(t *testing.T) {
	ref := regexp.MustCompile(`(?:from\s+|src=|href=)"\./?([a-z]+\.(?:js|css))"`)
	seen := 0
	for _, name := range []string{"index.html", "app.js", "views.js", "api.js", "dom.js", "chart.js"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatalf("embedded %s: %v", name, err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			seen++
			if _, err := fs.Stat(Files(), m[1]); err != nil {
				t.Errorf("%s refers to %s, which is not embedded", name, m[1])
			}
		}
	}
	if seen < 5 {
		t.Fatalf("found %d file references, want the page's modules and style sheet", seen)
	}
}

func TestURLPutsTokenInFragment(t *testing.T) {
	u, err := url.Parse(URL("127.0.0.1:5080", "abc123"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "127.0.0.1:5080" || u.Path != Path || u.RawQuery != "" || u.Fragment != "token=abc123" {
		t.Fatalf("URL = %s, want the token only in the fragment", u)
	}
}
