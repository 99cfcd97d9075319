// The disks behind NFC handles: one qemu-nbd per (local file, read-only or read-write), started
// on a Unix socket in DIR by the first OPEN_FILE that needs it, shared by every handle of every
// connection that has that file open that way (refcounted) and stopped when the last of them
// closes; reads and writes go through a pool of NBD connections to it (nbd_client.go), so the
// bytes are qemu's reading of the VMDK. qemu-nbd children die with the server (Pdeathsig, own
// process group, killed at exit): a test that kill -9s the server leaves none behind.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	childMu  sync.Mutex
	children = map[*exec.Cmd]bool{}
	sockSeq  int64
)

func killChild(cmd *exec.Cmd) {
	childMu.Lock()
	delete(children, cmd)
	childMu.Unlock()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
}

// killAllChildren runs at server exit.
func killAllChildren() {
	childMu.Lock()
	list := make([]*exec.Cmd, 0, len(children))
	for c := range children {
		list = append(list, c)
	}
	childMu.Unlock()
	for _, c := range list {
		killChild(c)
	}
}

const (
	// NBD connections per qemu-nbd, dialed as concurrent requests need them; qemu-nbd accepts
	// twice that many clients, so a connection that is being replaced never finds it full.
	nbdPoolSize = 8
	nbdShared   = 2 * nbdPoolSize
)

// nbdExport: one qemu-nbd and its connection pool, shared by the handles of one local file opened
// the same way. qemu 7.2's qemu-nbd has no --force-share: a read-write export and read-only ones
// of one file exclude each other (the second to start fails, naming qemu's lock).
type nbdExport struct {
	key    exportKey
	cmd    *exec.Cmd
	socket string
	pool   *nbdPool
	refs   int           // under exportsMu
	ready  chan struct{} // closed once started (or failed: err)
	err    error

	allocMu  sync.Mutex
	alloc    [][2]uint64 // [start, end) ranges holding data, nil until asked
	allocErr error
}

type exportKey struct {
	local string
	write bool
}

var (
	exportsMu   sync.Mutex
	exportsCond = sync.NewCond(&exportsMu)
	exports     = map[exportKey]*nbdExport{}
	stopping    = map[string]int{} // local file -> qemu-nbds of it being stopped
)

// acquireExport: the running qemu-nbd for (local, write), or a new one; one more reference. A new
// one waits until every qemu-nbd of that file that is being stopped has gone (and released its
// lock), so a handle closed (or a connection ended) just before does not make the open fail.
func acquireExport(dir, local string, write bool, logf func(string, ...interface{})) (*nbdExport, error) {
	key := exportKey{local, write}
	exportsMu.Lock()
	for exports[key] == nil && stopping[local] > 0 {
		exportsCond.Wait()
	}
	if e := exports[key]; e != nil {
		e.refs++
		exportsMu.Unlock()
		<-e.ready
		if e.err != nil {
			releaseExport(e)
			return nil, e.err
		}
		return e, nil
	}
	e := &nbdExport{key: key, refs: 1, ready: make(chan struct{})}
	exports[key] = e
	exportsMu.Unlock()
	e.err = e.start(dir, logf)
	if e.err != nil {
		exportsMu.Lock()
		if exports[key] == e {
			delete(exports, key)
		}
		exportsMu.Unlock()
	}
	close(e.ready)
	if e.err != nil {
		releaseExport(e)
		return nil, e.err
	}
	return e, nil
}

// releaseExport drops a reference; the last one disconnects and stops qemu-nbd.
func releaseExport(e *nbdExport) {
	exportsMu.Lock()
	e.refs--
	last := e.refs == 0
	if last && exports[e.key] == e {
		delete(exports, e.key)
	}
	stop := last && e.err == nil
	if stop {
		stopping[e.key.local]++
	}
	exportsMu.Unlock()
	if stop {
		e.pool.close()
		killChild(e.cmd)
		os.Remove(e.socket)
		exportsMu.Lock()
		if stopping[e.key.local]--; stopping[e.key.local] == 0 {
			delete(stopping, e.key.local)
		}
		exportsCond.Broadcast()
		exportsMu.Unlock()
	}
}

func (e *nbdExport) start(dir string, logf func(string, ...interface{})) error {
	n := atomic.AddInt64(&sockSeq, 1)
	e.socket = filepath.Join(dir, fmt.Sprintf("nbd-%d-%d.sock", os.Getpid(), n))
	args := []string{"-f", "vmdk", fmt.Sprintf("--shared=%d", nbdShared), "-k", e.socket}
	if !e.key.write {
		// Read-only opens take qemu's shared locks: many readers of one disk are fine (this
		// qemu-nbd has no --force-share, so a writer and readers of one disk exclude each other).
		args = append(args, "-r")
	}
	args = append(args, e.key.local)
	cmd := exec.Command("qemu-nbd", args...)
	// A file, not a pipe: no copying goroutine, and its text says why an open failed.
	logPath := e.socket + ".log"
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	defer os.Remove(logPath)
	cmd.Stderr = logFile
	cmd.Stdout = logFile
	stderr := func() string { b, _ := os.ReadFile(logPath); return strings.TrimSpace(string(b)) }
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting qemu-nbd: %v", err)
	}
	childMu.Lock()
	children[cmd] = true
	childMu.Unlock()
	e.cmd = cmd
	// The socket file appears at bind(), a moment before listen(): connection refused until then.
	deadline := time.Now().Add(20 * time.Second)
	var pool *nbdPool
	for {
		var err error
		if _, serr := os.Stat(e.socket); serr == nil {
			if pool, err = newNBDPool(e.socket, nbdPoolSize); err == nil {
				break
			}
		}
		var state syscall.WaitStatus
		if pid, _ := syscall.Wait4(cmd.Process.Pid, &state, syscall.WNOHANG, nil); pid == cmd.Process.Pid {
			childMu.Lock()
			delete(children, cmd)
			childMu.Unlock()
			os.Remove(e.socket)
			return fmt.Errorf("qemu-nbd exited (%v): %s", state, stderr())
		}
		if time.Now().After(deadline) {
			killChild(cmd)
			os.Remove(e.socket)
			return fmt.Errorf("qemu-nbd not ready after 20 s (%v): %s", err, stderr())
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.pool = pool
	logf("qemu-nbd pid %d serves %s (write %v) on %s, %d bytes", cmd.Process.Pid, e.key.local, e.key.write, e.socket, pool.size)
	return nil
}

// nfcDisk: one NFC handle, a reference to the export of its file.
type nfcDisk struct {
	path     string // datastore form, as opened
	local    string
	write    bool
	flags    uint32
	exp      *nbdExport
	pool     *nbdPool
	inflight sync.WaitGroup
	closed   sync.Once
}

func openDisk(dir, dsPath, local string, write bool, flags uint32, logf func(string, ...interface{})) (*nfcDisk, error) {
	e, err := acquireExport(dir, local, write, logf)
	if err != nil {
		return nil, err
	}
	return &nfcDisk{path: dsPath, local: local, write: write, flags: flags, exp: e, pool: e.pool}, nil
}

// close flushes (for a writable file) and drops the handle's reference to its qemu-nbd.
func (d *nfcDisk) close() error {
	var err error
	d.closed.Do(func() {
		if d.write {
			err = d.pool.flush()
		}
		releaseExport(d.exp)
	})
	return err
}

// ddb reads the descriptor's ddb.* entries: the text file itself, or the descriptor embedded in
// a sparse extent (header "KDMV": descriptorOffset at 28, descriptorSize at 36, in sectors).
func (d *nfcDisk) ddb() map[string]string {
	out := map[string]string{}
	f, err := os.Open(d.local)
	if err != nil {
		return out
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	var text []byte
	if n >= 44 && string(head[:4]) == "KDMV" {
		off, size := le.Uint64(head[28:]), le.Uint64(head[36:])
		if off > 0 && size > 0 && size <= 2048 {
			text = make([]byte, size*512)
			m, _ := f.ReadAt(text, int64(off*512))
			text = text[:m]
		}
	} else {
		text = make([]byte, 64<<10)
		m, _ := f.ReadAt(text, 0)
		text = text[:m]
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "ddb.") {
			continue
		}
		kv := strings.SplitN(line, "=", 2)
		if len(kv) != 2 {
			continue
		}
		out[strings.TrimSpace(strings.TrimPrefix(kv[0], "ddb."))] = strings.Trim(strings.TrimSpace(kv[1]), `"`)
	}
	return out
}

// geometry: the descriptor's, or the usual 16 heads × 63 sectors for the capacity.
func (d *nfcDisk) geometry() (cyl, heads, sectors uint32) {
	g := d.ddb()
	atoi := func(k string) uint32 { n, _ := strconv.ParseUint(g[k], 10, 32); return uint32(n) }
	cyl, heads, sectors = atoi("geometry.cylinders"), atoi("geometry.heads"), atoi("geometry.sectors")
	if cyl == 0 || heads == 0 || sectors == 0 {
		heads, sectors = 16, 63
		c := d.pool.size / 512 / (16 * 63)
		if c > 16383 {
			c = 16383
		}
		cyl = uint32(c)
	}
	return
}

// allocated: the ranges holding data, from `qemu-img map` (qemu follows the parent chain: data
// in any link counts); cached per export until the next write through it.
func (d *nfcDisk) allocated() ([][2]uint64, error) {
	return d.exp.allocated()
}

func (d *nbdExport) allocated() ([][2]uint64, error) {
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	if d.alloc != nil || d.allocErr != nil {
		return d.alloc, d.allocErr
	}
	out, err := exec.Command("qemu-img", "map", "-U", "--output=json", "-f", "vmdk", d.key.local).Output()
	if err != nil {
		d.allocErr = fmt.Errorf("qemu-img map: %v", err)
		return nil, d.allocErr
	}
	var entries []struct {
		Start  uint64 `json:"start"`
		Length uint64 `json:"length"`
		Data   bool   `json:"data"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		d.allocErr = fmt.Errorf("qemu-img map output: %v", err)
		return nil, d.allocErr
	}
	d.alloc = [][2]uint64{}
	for _, e := range entries {
		if e.Data && e.Length > 0 {
			d.alloc = append(d.alloc, [2]uint64{e.Start, e.Start + e.Length})
		}
	}
	return d.alloc, nil
}

func (d *nfcDisk) forgetAllocation() {
	e := d.exp
	e.allocMu.Lock()
	e.alloc, e.allocErr = nil, nil
	e.allocMu.Unlock()
}

// bitmap: one bit per chunk from start, LSB first, a chunk set when any byte of it holds data;
// padded to 4 bytes.
func bitmap(ranges [][2]uint64, start, chunk, count uint64) []byte {
	bm := make([]byte, (count+31)/32*4)
	end := start + chunk*count
	for _, r := range ranges {
		a, b := r[0], r[1]
		if b <= start || a >= end {
			continue
		}
		if a < start {
			a = start
		}
		if b > end {
			b = end
		}
		for i := (a - start) / chunk; i <= (b-1-start)/chunk; i++ {
			bm[i/8] |= 1 << (i % 8)
		}
	}
	return bm
}
