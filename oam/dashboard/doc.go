// Package dashboard is the node's local web dashboard: plain HTML, CSS and
// JavaScript embedded in the binary and served by the control API under
// /ui/. The files carry no data of the node, so they are served without the
// token; the page takes the token from its URL fragment (which `daitn
// dashboard` puts there and the browser never sends to a server) and reads
// everything it shows from the existing /v1 routes with it. Nothing is
// fetched from any other host, so the page works offline.
package dashboard
