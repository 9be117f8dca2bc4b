package oam

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// File names inside the data directory through which clients find a running node.
const (
	TokenFile = "api.token" // bearer token, mode 0600
	AddrFile  = "api.addr"  // host:port the API is bound to while the node runs
)

// Server is the control API. Routes are added with Handle before or after
// Start; every route requires the bearer token, except the few added with
// HandlePublic.
type Server struct {
	ln      net.Listener
	mux     *http.ServeMux
	public  *http.ServeMux
	srv     *http.Server
	token   []byte
	log     *slog.Logger
	done    chan struct{}
	once    sync.Once
	started bool
	closed  chan struct{}
}

// Listen binds the API to addr, which must be a loopback address: the API can
// start jobs and read private data, so it is never exposed on a network.
func Listen(addr string, token string, log *slog.Logger) (*Server, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		ln:     ln,
		mux:    http.NewServeMux(),
		public: http.NewServeMux(),
		token:  []byte(token),
		log:    log,
		closed: make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           s.route(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return s, nil
}

// CheckLoopback returns an error naming addr unless it is host:port with a
// loopback host.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("api address %q: want host:port on 127.0.0.1 or [::1]: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("api address %q: host must be a loopback address (127.0.0.1 or ::1), the control API is never exposed on a network", addr)
	}
	return nil
}

// Addr is the bound address (useful when the port was 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handle registers h for a Go 1.22 mux pattern such as "GET /v1/peers".
func (s *Server) Handle(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// HandleHandler registers an http.Handler (for /metrics).
func (s *Server) HandleHandler(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandlePublic registers h for a pattern that is served without the token.
// It is only for content that carries no data of the node, such as the
// dashboard's static files: the page they make asks for the token and sends
// it with every data call, which still goes through the token check.
func (s *Server) HandlePublic(pattern string, h http.Handler) { s.public.Handle(pattern, h) }

// route sends requests matching a public pattern to the public mux and
// everything else through the token check.
func (s *Server) route() http.Handler {
	authed := s.auth(s.mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := s.public.Handler(r); pattern != "" {
			s.public.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
}

// Start serves in a goroutine owned by the server and stopped by Close.
func (s *Server) Start() {
	s.started = true
	go func() {
		defer close(s.closed)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "err", err)
		}
	}()
}

// Close stops the server, waiting up to 5s for requests in flight. Streaming
// requests are cut: their contexts are cancelled.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if !s.started {
			err = s.ln.Close()
			return
		}
		if e := s.srv.Shutdown(ctx); e != nil {
			err = s.srv.Close()
		}
		select {
		case <-s.closed:
		case <-time.After(5 * time.Second):
		}
	})
	return err
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		got, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), s.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="daitn"`)
			WriteError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token: read it from the node's data directory (api.token)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LoadOrCreateToken returns the token stored at path, creating a random one
// with mode 0600 if the file does not exist.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("api token %s: too short (%d chars), delete it to have a new one made", path, len(tok))
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read api token %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make api token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write api token: %w", err)
	}
	return tok, nil
}

// WriteFileAtomic writes data to path via a temporary file and rename, so a
// crash leaves either the old or the new content, never a torn file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
