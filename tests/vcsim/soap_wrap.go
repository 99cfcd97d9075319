// The switches and additions of this simulator answer some SOAP calls before govmomi does. Each
// puts itself in front of the server's handler through wrapSOAP.
package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/vmware/govmomi/simulator"
)

// wrapSOAP puts handle in front of the server's handler for SOAP requests (POST .../sdk), with
// the request's body read and left readable for next; other requests go straight to next.
func wrapSOAP(s *simulator.Server, handle func(next http.Handler, w http.ResponseWriter, r *http.Request, body []byte)) {
	next := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/sdk") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		handle(next, w, r, body)
	})
}
