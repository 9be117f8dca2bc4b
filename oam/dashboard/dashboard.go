package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"net/url"
)

// Path is where the control API serves the dashboard.
const Path = "/ui/"

//go:embed ui
var files embed.FS

// csp keeps the page to its own origin: its scripts and styles come from
// the node, its data calls go to the node, and no other page may frame it
// (the page holds the token).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Files is the dashboard's static files, index.html at the root.
func Files() fs.FS {
	sub, err := fs.Sub(files, "ui")
	if err != nil {
		panic("dashboard: embedded ui directory missing: " + err.Error()) // a build error, not a runtime one
	}
	return sub
}

// Handler serves the files for requests under Path.
func Handler() http.Handler {
	fsrv := http.StripPrefix(Path[:len(Path)-1], http.FileServerFS(Files()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The files have no modification time in the binary; no-cache makes
		// a browser pick up a new daitn's page after an upgrade.
		h.Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}

// URL is the address that opens the dashboard of the API at addr
// (host:port) with token. The token is in the fragment, which browsers keep
// to themselves: it reaches neither the server's logs nor a Referer header.
func URL(addr, token string) string {
	return "http://" + addr + Path + "#token=" + url.QueryEscape(token)
}
