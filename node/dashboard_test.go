package node_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/oam/dashboard"
)

func apiGet(t *testing.T, ctx context.Context, addr, path, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

func TestDashboardServedWithoutToken(t *testing.T) {
	nd := nodetest.Start(t, 1, nodetest.WithoutServices())[0]
	ctx := context.Background()
	resp := apiGet(t, ctx, nd.APIAddr(), "/ui/", "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "<title>daitn dashboard</title>") {
		t.Fatalf("GET /ui/ without token: %d %q, want 200 text/html with the page", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp = apiGet(t, ctx, nd.APIAddr(), "/ui/app.js", "")
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /ui/app.js without token: %d %q, want 200 text/javascript", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The bare address leads to the page.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + nd.APIAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET / without token: %d to %q, want 302 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The data stays behind the token.
	for _, p := range []string{"/v1/status", "/v1/events", "/metrics"} {
		resp = apiGet(t, ctx, nd.APIAddr(), p, "")
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s without token: %d, want 401", p, resp.StatusCode)
		}
	}
}

var (
	// A route in the page: a whole string literal starting with /v1/, up to
	// the closing quote or the query string.
	jsRoute = regexp.MustCompile(`["'` + "`" + `](/v1/[A-Za-z0-9_/{}-]*)["'?` + "`" + `]`)
	// Routes the page reads with getOptional, which takes 404 as "this
	// node does not have it".
	jsOptional = regexp.MustCompile(`getOptional\(\s*["'](/v1/[A-Za-z0-9_/{}-]*)["'?]`)
	pathParam  = regexp.MustCompile(`\{\w+\}`)
)

// dashboardRoutes returns every route the embedded JavaScript calls, and
// which of them it reads as optional.
func dashboardRoutes(t *testing.T) (routes []string, optional map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	optional = map[string]bool{}
	err := fs.WalkDir(dashboard.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, err := fs.ReadFile(dashboard.Files(), p)
		if err != nil {
			return err
		}
		for _, m := range jsRoute.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
		for _, m := range jsOptional.FindAllStringSubmatch(string(b), -1) {
			optional[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r := range seen {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	return routes, optional
}

// Every route the dashboard calls is served by a real node: the page can
// never ask for a route that does not exist. A route with a path parameter
// is asked with an id that does not exist; its 404 must then come from the
// handler (a JSON error), not from the mux.
func TestDashboardRoutesExist(t *testing.T) {
	routes, optional := dashboardRoutes(t)
	// The page reads at least these; if the pattern stops finding them, the
	// test must fail rather than check nothing.
	for _, want := range []string{"/v1/status", "/v1/peers", "/v1/map", "/v1/train/jobs", "/v1/train/jobs/{id}/events", "/v1/events", "/v1/transfer/stat"} {
		if !contains(routes, want) {
			t.Fatalf("routes found in the dashboard %v lack %s", routes, want)
		}
	}
	nd := nodetest.Start(t, 1)[0]
	tok, err := os.ReadFile(filepath.Join(nd.DataDir(), oam.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, route := range routes {
		t.Run(strings.TrimPrefix(route, "/v1/"), func(t *testing.T) {
			p := pathParam.ReplaceAllString(route, "no-such-id")
			// Streams never end on their own: read the headers, then hang up.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp := apiGet(t, ctx, nd.APIAddr(), p, strings.TrimSpace(string(tok)))
			defer resp.Body.Close()
			ctype := resp.Header.Get("Content-Type")
			if resp.StatusCode == 200 {
				if !strings.HasPrefix(ctype, "application/json") && !strings.HasPrefix(ctype, "text/event-stream") {
					t.Fatalf("GET %s: 200 with Content-Type %q, want JSON or an event stream", p, ctype)
				}
				return
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			var e oam.Error
			handlerError := strings.HasPrefix(ctype, "application/json") && json.Unmarshal(b, &e) == nil && e.Error != ""
			switch {
			case resp.StatusCode == 404 && optional[route]:
				// The page shows "not on this node".
			case resp.StatusCode == 404 && p != route && handlerError:
				// The handler's own "no such job".
			default:
				t.Fatalf("GET %s (route %s): %d %q %s", p, route, resp.StatusCode, ctype, b)
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
