// -host-https: what an ESXi host's own /folder service looks like to a client that reads a disk
// straight from the host with a vCenter's generic service ticket. A second HTTPS listener (the
// simulator's certificate) serves /folder/<path>?dcPath=ha-datacenter&dsName=<ds> from the
// datastore folders, only with the cookie vmware_cgi_ticket=<id> of a ticket that
// SessionManager.AcquireGenericServiceTicket issued for that URL's path and datastore (401
// otherwise). The AcquireGenericServiceTicket calls are answered by govmomi (which checks the
// session) and recorded on their way out; every HostSystem's summary.config.port and sslThumbprint
// name the listener. The vCenter's own /folder then wants a live session cookie (401 without), as
// a real vCenter does.
//
// DIR (VCSIM_HOST_HTTPS_DIR) holds host.log, a line per request of either path:
//
//	host GET /folder/vm/disk.vmdk inflight=2 206
//	vcenter HEAD /folder/vm/disk.vmdk 200
//	ticket issued /folder/vm/disk.vmdk          (or "ticket refused")
//
// and the optional faults file (key=value lines, read again at each request):
//
//	status=503|429 every=N   every Nth host /folder request answers that status
//	retry_after=S            with Retry-After: S
//	hang=1                   host /folder requests get no answer until the client goes away
//	single_use=1             a ticket is good for one request
//	refuse_tickets=1         AcquireGenericServiceTicket answers a SystemError fault
//	delay_ms=N               each host /folder request waits N ms before its answer
package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
)

type hostTicket struct {
	path, dsName, method string
}

type hostHTTPS struct {
	dir      string
	port     int
	sha1     string
	inner    http.Handler // the simulator's own handler
	mu       sync.Mutex
	tickets  map[string]hostTicket
	requests int // host /folder requests so far (for every=N)
	inflight int
	logMu    sync.Mutex
	// -folder-auth: the vCenter's /folder wants a live session cookie
	folderAuth bool
}

func (h *hostHTTPS) log(format string, args ...interface{}) {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	f, err := os.OpenFile(filepath.Join(h.dir, "host.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}

func (h *hostHTTPS) faults() map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(filepath.Join(h.dir, "faults"))
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if kv := strings.SplitN(strings.TrimSpace(sc.Text()), "=", 2); len(kv) == 2 {
			out[strings.TrimSpace(kv[0])] = strings.TrimSpace(kv[1])
		}
	}
	return out
}

func hostFault(f map[string]string, key string) int {
	return int(faultInt(f, key, 0))
}

// startHostHTTPS wraps the simulator's handler and starts the host listener.
func startHostHTTPS(s *simulator.Server, folderAuth bool) (*hostHTTPS, error) {
	if s.Server.TLS == nil || len(s.Server.TLS.Certificates) == 0 {
		return nil, fmt.Errorf("-host-https needs -tls with a certificate of ours (not -tls-builtin)")
	}
	h := &hostHTTPS{inner: s.Server.Config.Handler, tickets: map[string]hostTicket{}, folderAuth: folderAuth}
	var err error
	if h.dir, err = os.MkdirTemp("", "vcsim-host-"); err != nil {
		return nil, err
	}
	cert := s.Server.TLS.Certificates[0]
	sum := sha1.Sum(cert.Certificate[0])
	h.sha1 = thumbprint(sum[:])
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(h.dir)
		return nil, err
	}
	h.port = l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(h.serveHost),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.Serve(tls.NewListener(l, srv.TLSConfig))
	// The simulator's server is listening already but no client knows its address yet.
	s.Server.Config.Handler = http.HandlerFunc(h.serveVCenter)
	for _, e := range simulator.Map.All("HostSystem") {
		hs := e.(*simulator.HostSystem)
		simulator.Map.WithLock(hs, func() {
			hs.Summary.Config.Port = int32(h.port)
			hs.Summary.Config.SslThumbprint = h.sha1
		})
	}
	return h, nil
}

func (h *hostHTTPS) env() []string {
	return []string{"VCSIM_HOST_HTTPS_PORT=" + strconv.Itoa(h.port), "VCSIM_HOST_HTTPS_DIR=" + h.dir,
		"VCSIM_HOST_HTTPS_SHA1=" + h.sha1}
}

func (h *hostHTTPS) stop() {
	if h != nil && h.dir != "" {
		os.RemoveAll(h.dir)
	}
}

var genericTicketURL = regexp.MustCompile(`<url>([^<]*)</url>`)
var genericTicketMethod = regexp.MustCompile(`<method>([^<]*)</method>`)
var genericTicketID = regexp.MustCompile(`<id>([^<]*)</id>`)

func xmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&apos;", "'", "&#39;", "'").Replace(s)
}

const ticketRefusedFault = `<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>generic service tickets refused (vcsim fault refuse_tickets)</faultstring><detail><SystemErrorFault xmlns="urn:vim25" xsi:type="SystemError"><reason>refuse_tickets</reason></SystemErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>`

// serveVCenter: the simulator's handler, with AcquireGenericServiceTicket recorded and /folder
// behind the session cookie.
func (h *hostHTTPS) serveVCenter(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/folder/") {
		if h.folderAuth && !h.sessionAlive(r) {
			h.log("vcenter %s %s 401", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rec := &statusWriter{ResponseWriter: w, status: 200}
		h.inner.ServeHTTP(rec, r)
		h.log("vcenter %s %s %d", r.Method, r.URL.Path, rec.status)
		return
	}
	if r.Method != http.MethodPost {
		h.inner.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !bytes.Contains(body, []byte("AcquireGenericServiceTicket")) {
		h.inner.ServeHTTP(w, r)
		return
	}
	m := genericTicketURL.FindSubmatch(body)
	if h.faults()["refuse_tickets"] == "1" || m == nil {
		h.log("ticket refused")
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, ticketRefusedFault)
		return
	}
	rec := httptest.NewRecorder()
	h.inner.ServeHTTP(rec, r)
	out := rec.Body.Bytes()
	if id := genericTicketID.FindSubmatch(out); rec.Code == 200 && id != nil {
		if u, err := url.Parse(xmlUnescape(string(m[1]))); err == nil {
			method := "httpGet"
			if mm := genericTicketMethod.FindSubmatch(body); mm != nil {
				method = string(mm[1])
			}
			h.mu.Lock()
			h.tickets[string(id[1])] = hostTicket{path: u.Path, dsName: u.Query().Get("dsName"), method: method}
			h.mu.Unlock()
			h.log("ticket issued %s", u.Path)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(out)
}

const sessionProbe = `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>Folder</type><pathSet>name</pathSet></propSet><objectSet><obj type="Folder">group-d1</obj></objectSet></specSet><options/></RetrievePropertiesEx></soapenv:Body></soapenv:Envelope>`

// sessionAlive asks the simulator whether the request's session cookie names a live session.
func (h *hostHTTPS) sessionAlive(r *http.Request) bool {
	c, err := r.Cookie("vmware_soap_session")
	if err != nil || c.Value == "" {
		return false
	}
	probe := httptest.NewRequest(http.MethodPost, "/sdk", strings.NewReader(sessionProbe))
	probe.Header.Set("Content-Type", "text/xml")
	probe.Header.Set("SOAPAction", "urn:vim25/6.5")
	probe.AddCookie(c)
	rec := httptest.NewRecorder()
	h.inner.ServeHTTP(rec, probe)
	return rec.Code == 200 && !strings.Contains(rec.Body.String(), "NotAuthenticated")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// serveHost: the host's /folder, behind tickets. A request counts as in flight from its arrival
// until its answer starts (after delay_ms): a client that saw the answer end may send the next
// one before this handler returns, which is no concurrency of the client's.
func (h *hostHTTPS) serveHost(w http.ResponseWriter, r *http.Request) {
	f := h.faults()
	h.mu.Lock()
	h.requests++
	n := h.requests
	h.inflight++
	inflight := h.inflight
	h.mu.Unlock()
	if d := hostFault(f, "delay_ms"); d > 0 {
		time.Sleep(time.Duration(d) * time.Millisecond)
	}
	h.mu.Lock()
	h.inflight--
	h.mu.Unlock()
	status := h.answerHost(w, r, f, n)
	h.log("host %s %s inflight=%d %d", r.Method, r.URL.Path, inflight, status)
}

func (h *hostHTTPS) answerHost(w http.ResponseWriter, r *http.Request, f map[string]string, n int) int {
	if f["hang"] == "1" {
		<-r.Context().Done()
		return 0
	}
	if !strings.HasPrefix(r.URL.Path, "/folder/") || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		w.WriteHeader(http.StatusNotFound)
		return http.StatusNotFound
	}
	c, err := r.Cookie("vmware_cgi_ticket")
	h.mu.Lock()
	t, known := hostTicket{}, false
	if err == nil {
		t, known = h.tickets[c.Value]
	}
	valid := known && t.path == r.URL.Path && t.dsName == r.URL.Query().Get("dsName") && t.method == "httpGet"
	if valid && f["single_use"] == "1" {
		delete(h.tickets, c.Value)
	}
	h.mu.Unlock()
	if !valid {
		w.WriteHeader(http.StatusUnauthorized)
		return http.StatusUnauthorized
	}
	if code := hostFault(f, "status"); code != 0 && (hostFault(f, "every") <= 1 || n%hostFault(f, "every") == 0) {
		if ra := f["retry_after"]; ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(code)
		io.WriteString(w, "busy (vcsim fault)")
		return code
	}
	if r.URL.Query().Get("dcPath") != "ha-datacenter" {
		w.WriteHeader(http.StatusNotFound)
		return http.StatusNotFound
	}
	root := datastoreFolder(r.URL.Query().Get("dsName"))
	rel := filepath.Clean("/" + strings.TrimPrefix(r.URL.Path, "/folder/"))
	if root == "" || rel == "/" {
		w.WriteHeader(http.StatusNotFound)
		return http.StatusNotFound
	}
	file, err := os.Open(filepath.Join(root, rel))
	if err != nil {
		w.WriteHeader(http.StatusNotFound)
		return http.StatusNotFound
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil || st.IsDir() {
		w.WriteHeader(http.StatusNotFound)
		return http.StatusNotFound
	}
	rec := &statusWriter{ResponseWriter: w, status: 200}
	http.ServeContent(rec, r, "", st.ModTime(), file)
	return rec.status
}
