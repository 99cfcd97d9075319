// `vcsim nfc-serve -dir DIR`: an NFC server that answers like ESXi 8 on port 902 would, for the
// tests of the nbd and nbdssl transports. A process of its own (the simulator starts it) so that
// a test can kill -9 it and start it again on the same port. Everything it needs is in DIR
// (cert.pem, key.pem, port, tickets/, faults); it writes DIR/pid and logs to DIR/nfc.log.
//
// Per connection: authd's plain-text greeting, TLS, the SESSION/BANNER/THUMBPRINT_SHA2/PROXY
// lines, then NFC raw on the socket (nbd) or inside a second TLS session (nbdssl): the classic
// 264-byte handshake and the AIO requests (nfc_aio.go).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const authdGreeting = "220 VMware Authentication Daemon Version 1.10: SSL Required, ServerDaemonProtocol:SOAP, " +
	"MKSDisplayProtocol:VNC , VMXARGS supported, NFCSSL supported/t, SHA256 supported\r\n"

// nfcTicket is what the simulator writes to DIR/tickets/<sessionId>.json (nfc_service.go).
type nfcTicket struct {
	VM      string            `json:"vm"`
	DiskKey *int32            `json:"diskKey"`
	Write   bool              `json:"write"`
	Files   map[string]string `json:"files"`
}

type nfcServer struct {
	dir     string
	tlsCfg  *tls.Config
	sha256  string
	faults  *faults
	logMu   sync.Mutex
	logFile *os.File
	connSeq int
}

func (s *nfcServer) logf(format string, args ...interface{}) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.logFile, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func nfcServe(args []string) {
	fs := flag.NewFlagSet("nfc-serve", flag.ExitOnError)
	dir := fs.String("dir", "", "folder with cert.pem, key.pem, port, tickets/ and faults")
	fs.Parse(args)
	if *dir == "" {
		die("nfc-serve: -dir is required")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(*dir, "cert.pem"), filepath.Join(*dir, "key.pem"))
	if err != nil {
		die("nfc-serve: %v", err)
	}
	portText, err := os.ReadFile(filepath.Join(*dir, "port"))
	if err != nil {
		die("nfc-serve: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(portText)))
	if err != nil || port <= 0 || port > 65535 {
		die("nfc-serve: bad port %q", portText)
	}
	logFile, err := os.OpenFile(filepath.Join(*dir, "nfc.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		die("nfc-serve: %v", err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	// Full-size TLS records from the first byte: no slow start of small ones.
	s := &nfcServer{
		dir:     *dir,
		tlsCfg:  &tls.Config{Certificates: []tls.Certificate{cert}, DynamicRecordSizingDisabled: true},
		sha256:  thumbprint(sum[:]),
		faults:  newFaults(filepath.Join(*dir, "faults")),
		logFile: logFile,
	}
	// SO_REUSEADDR: a server started right after a kill -9 gets the same port despite TIME_WAIT.
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		die("nfc-serve: %v", err)
	}
	if err := writeAtomic(filepath.Join(*dir, "pid"), []byte(fmt.Sprintf("%d\n", os.Getpid()))); err != nil {
		die("nfc-serve: %v", err)
	}
	s.logf("nfc-serve pid %d listening on 127.0.0.1:%d", os.Getpid(), port)
	writeAtomic(filepath.Join(*dir, "ready"), []byte("1\n"))

	go s.watchOwner()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		s.logf("nfc-serve exiting on signal")
		ln.Close()
		killAllChildren()
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Temporary() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			killAllChildren()
			log.Fatalf("nfc-serve: accept: %v", err)
		}
		s.connSeq++
		go s.serveConn(c.(*net.TCPConn), s.connSeq)
	}
}

var ticketID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// takeTicket consumes DIR/tickets/<id>.json: renamed away first, so two connections can never
// both use one ticket.
func (s *nfcServer) takeTicket(id string, conn int) (*nfcTicket, error) {
	if !ticketID.MatchString(id) {
		return nil, fmt.Errorf("malformed session id")
	}
	path := filepath.Join(s.dir, "tickets", id+".json")
	taken := fmt.Sprintf("%s.taken-%d-%d", path, os.Getpid(), conn)
	if err := os.Rename(path, taken); err != nil {
		return nil, fmt.Errorf("unknown or already used")
	}
	defer os.Remove(taken)
	data, err := os.ReadFile(taken)
	if err != nil {
		return nil, err
	}
	t := new(nfcTicket)
	if err := json.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("ticket file: %v", err)
	}
	return t, nil
}

func (s *nfcServer) serveConn(raw *net.TCPConn, id int) {
	defer raw.Close()
	logf := func(format string, args ...interface{}) {
		s.logf("conn %d: "+format, append([]interface{}{id}, args...)...)
	}
	logf("accepted from %s", raw.RemoteAddr())
	defer func() {
		if r := recover(); r != nil {
			logf("panic (a server bug): %v", r)
		}
	}()
	f := s.faults.snapshot()
	if _, err := io.WriteString(raw, authdGreeting); err != nil {
		logf("greeting: %v", err)
		return
	}
	authd := tls.Server(raw, s.tlsCfg)
	authd.SetDeadline(time.Now().Add(30 * time.Second))
	if err := authd.Handshake(); err != nil {
		logf("authd TLS handshake: %v", err)
		return
	}
	// Lines are read one byte at a time straight from the TLS connection: nothing may be read
	// past the PROXY line, whose answer hands the socket to NFC.
	readLine := func() (string, error) {
		var b []byte
		var one [1]byte
		for len(b) < 4096 {
			if _, err := authd.Read(one[:]); err != nil {
				return "", err
			}
			if one[0] == '\n' {
				return strings.TrimSuffix(string(b), "\r"), nil
			}
			b = append(b, one[0])
		}
		return "", fmt.Errorf("line longer than 4096 bytes")
	}
	reply := func(text string) bool {
		logf("authd < %s", text)
		_, err := io.WriteString(authd, text+"\r\n")
		return err == nil
	}
	var ticket *nfcTicket
	var ticketErr string
	var service string
	for service == "" {
		line, err := readLine()
		if err != nil {
			logf("authd: %v", err)
			return
		}
		shown := line
		if strings.HasPrefix(line, "SESSION ") {
			shown = "SESSION <id>"
		}
		logf("authd > %s", shown)
		if ticketErr != "" {
			reply("530 " + ticketErr)
			return
		}
		switch {
		case strings.HasPrefix(line, "SESSION "):
			sid := strings.TrimSpace(strings.TrimPrefix(line, "SESSION "))
			t, err := s.takeTicket(sid, id)
			if err != nil {
				logf("ticket %q refused: %v", sid, err)
				ticketErr = fmt.Sprintf("Invalid ticket (session id %s): %v", sid, err)
				continue
			}
			logf("ticket %s: vm %s write %v, %d files", sid, t.VM, t.Write, len(t.Files))
			ticket = t
		case line == "BANNER " || line == "BANNER":
			if text, ok := f["authd_refuse"]; ok {
				logf("fault authd_refuse")
				reply("530 " + text)
				return
			}
			if !reply("220 VMware Authentication Daemon Version 1.10 (vixfs test server)") {
				return
			}
		case line == "THUMBPRINT_SHA2 PlainText":
			if !reply("200 " + s.sha256) {
				return
			}
		case line == "PROXY vpxa-nfc" || line == "PROXY vpxa-nfcssl":
			if ticket == nil {
				reply("530 Not logged in: no SESSION ticket before PROXY")
				return
			}
			service = strings.TrimPrefix(line, "PROXY vpxa-")
			if !reply("200 Connect ha-" + service) {
				return
			}
		default:
			if !reply("501 Invalid arguments") {
				return
			}
		}
	}
	// The authd TLS session is dropped without close_notify: NFC goes on raw (nbd) or in a
	// fresh TLS session (nbdssl) on the same socket.
	var conn net.Conn = raw
	var wbuf *bufferedConn
	raw.SetDeadline(time.Time{})
	if service == "nfcssl" {
		wbuf = newBufferedConn(raw)
		t := tls.Server(wbuf, s.tlsCfg)
		t.SetDeadline(time.Now().Add(30 * time.Second))
		if err := t.Handshake(); err != nil {
			logf("nfcssl TLS handshake: %v", err)
			return
		}
		t.SetDeadline(time.Time{})
		wbuf.startBuffering()
		conn = t
	}
	logf("NFC over %s", map[string]string{"nfc": "plain TCP", "nfcssl": "TLS"}[service])
	c := &nfcConn{srv: s, id: id, raw: raw, conn: conn, wbuf: wbuf, rd: bufio.NewReaderSize(conn, 256<<10),
		ticket: ticket, logf: logf, files: map[uint64]*nfcDisk{}, writes: map[uint32]*pendingWrite{}}
	defer c.cleanup()
	if err := c.classicHandshake(); err != nil {
		logf("classic handshake: %v", err)
		return
	}
	if err := c.aioLoop(); err != nil && err != io.EOF {
		logf("AIO: %v", err)
	}
	logf("closed")
}

func (c *nfcConn) classicHandshake() error {
	msg := make([]byte, classicSize)
	expect := func(typ uint32) error {
		if _, err := io.ReadFull(c.rd, msg); err != nil {
			return err
		}
		if got := le.Uint32(msg); got != typ {
			text := fmt.Sprintf("NFC protocol error: expected message type %d, got %d", typ, got)
			c.send(classicErrorMsg(3, text))
			return fmt.Errorf("%s", text)
		}
		c.logf("classic > %d", typ)
		return nil
	}
	if err := expect(classicHandshake); err != nil {
		return err
	}
	if got := strings.TrimRight(string(msg[4:13]), "\x00"); got != "PlainText" {
		c.logf("classic 43 carries %q, not PlainText (accepted)", got)
	}
	if err := expect(classicSessionParams); err != nil {
		return err
	}
	m := classicMsg(classicParamsReply)
	le.PutUint32(m[16:], 1)
	if err := c.send(m); err != nil {
		return err
	}
	if err := expect(classicVersion); err != nil {
		return err
	}
	if v := le.Uint32(msg[4:]); v < 3 {
		text := fmt.Sprintf("NFC protocol error: client version %d is older than 3", v)
		c.send(classicErrorMsg(3, text))
		return fmt.Errorf("%s", text)
	}
	m = classicMsg(classicVersion)
	version := faultInt(c.srv.faults.snapshot(), "server_version", 11)
	if version != 11 {
		c.logf("fault server_version=%d", version)
	}
	le.PutUint32(m[4:], uint32(version))
	if err := c.send(m); err != nil {
		return err
	}
	if err := expect(classicConnData); err != nil {
		return err
	}
	nameLen, opLen := le.Uint32(msg[4:]), le.Uint32(msg[8:])
	if nameLen > 4096 || opLen > 4096 {
		text := fmt.Sprintf("NFC protocol error: connection data lengths %d and %d", nameLen, opLen)
		c.send(classicErrorMsg(3, text))
		return fmt.Errorf("%s", text)
	}
	names := make([]byte, nameLen+opLen)
	if _, err := io.ReadFull(c.rd, names); err != nil {
		return err
	}
	c.logf("client %q op %q", names[:nameLen], names[nameLen:])
	if err := expect(classicFeatures); err != nil {
		return err
	}
	if err := expect(classicAioOpen); err != nil {
		return err
	}
	return c.send(classicMsg(classicAioOpen))
}

// watchOwner ends the server when the simulator that made DIR is gone or DIR was removed: a
// server a test restarted is no child of the simulator, so Pdeathsig does not cover it.
func (s *nfcServer) watchOwner() {
	b, err := os.ReadFile(filepath.Join(s.dir, "owner"))
	owner, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for {
		time.Sleep(250 * time.Millisecond)
		_, derr := os.Stat(filepath.Join(s.dir, "port"))
		if derr != nil || (err == nil && owner > 0 && syscall.Kill(owner, 0) != nil) {
			s.logf("nfc-serve exiting: the simulator or DIR is gone")
			killAllChildren()
			os.Exit(0)
		}
	}
}
