// The AIO half of an NFC connection: one reader (this loop) and a goroutine per request, so that
// requests with different opIds run concurrently as on a real host; replies go out whole frames
// at a time under one lock, so fragments of different replies interleave only at frame bounds.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sort"
	"sync"
	"time"
)

// The least payload each known request type carries.
var aioPayloadNeed = map[uint32]uint32{aioOpenSess: 16, aioCloseSess: 4, aioOpenFile: 60, aioCloseFile: 8,
	aioIO: 44, aioSockOpts: 12, aioDDBGet: 16, aioQueryAlloc: 48, aioResPool: 4}

type pendingWrite struct {
	handle   uint64
	disk     *nfcDisk // holds an inflight reference until answered
	offset   uint64
	total    uint32
	got      uint64
	data     []byte  // *buf, total bytes
	buf      *[]byte // pooled (getBuf), returned when answered or dropped
	seen     map[uint32]bool
	errText  string // set: the reply after the last fragment is this error
	errCode  uint64
	compUsed bool
}

type nfcConn struct {
	srv    *nfcServer
	id     int
	raw    *net.TCPConn
	conn   net.Conn
	wbuf   *bufferedConn // under conn when it is TLS: its records leave in few writes
	rd     io.Reader
	ticket *nfcTicket
	logf   func(string, ...interface{})

	wmu      sync.Mutex // one frame at a time on the wire
	mu       sync.Mutex // files, nextID, ioDone
	files    map[uint64]*nfcDisk
	nextID   uint64
	writes   map[uint32]*pendingWrite // only the reader touches it
	wg       sync.WaitGroup           // requests in flight
	bufSize  uint32
	ioDone   int64
	dropped  bool
	sessOpen bool
}

// send writes one frame; bad_magic=1 spoils the magic of the next frame of this server.
func (c *nfcConn) send(frame []byte) error {
	if len(frame) >= aioHeader && le.Uint32(frame) == aioMagic && c.srv.faults.take("bad_magic") {
		c.logf("fault bad_magic on a type %d reply", le.Uint32(frame[4:]))
		frame = append([]byte(nil), frame...)
		le.PutUint32(frame, 0xDEADBEEF)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(frame)
	if err == nil && c.wbuf != nil {
		err = c.wbuf.flush()
	}
	return err
}

// bufferedConn sits under a TLS session: once buffering is on (after the handshake), the records
// of one frame gather in w and go out in writes of up to its size when send flushes, instead of
// one write per record. A mutex, as TLS may also write from the reader (an alert).
type bufferedConn struct {
	net.Conn
	mu        sync.Mutex
	w         *bufio.Writer
	buffering bool
}

func newBufferedConn(c net.Conn) *bufferedConn {
	return &bufferedConn{Conn: c, w: bufio.NewWriterSize(c, 256<<10)}
}

func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.buffering {
		if err := b.w.Flush(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	return b.w.Write(p)
}

func (b *bufferedConn) startBuffering() {
	b.mu.Lock()
	b.buffering = true
	b.mu.Unlock()
}

func (b *bufferedConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

func (c *nfcConn) reply(typ, opID uint32, payload []byte) error {
	return c.send(aioFrame(typ, opID, payload, nil))
}

func (c *nfcConn) replyError(opID uint32, code uint64, text string) error {
	c.logf("op %d: error reply %d %q", opID, code, text)
	return c.send(aioFrame(aioError, opID, errorPayload(code, text), nil))
}

func (c *nfcConn) cleanup() {
	c.dropPendingWrites()
	c.wg.Wait()
	c.mu.Lock()
	files := c.files
	c.files = map[uint64]*nfcDisk{}
	c.mu.Unlock()
	for h, d := range files {
		c.logf("handle %d (%s) closed with the connection", h, d.path)
		d.inflight.Wait()
		d.close()
	}
}

// survive: deferred first in every request goroutine, so a server bug costs one connection (its
// reader sees the socket closed), never the server.
func (c *nfcConn) survive() {
	if r := recover(); r != nil {
		c.logf("panic in a request (a server bug): %v", r)
		c.raw.Close()
	}
}

func (c *nfcConn) disk(handle uint64) *nfcDisk {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.files[handle]
	if d != nil {
		d.inflight.Add(1)
	}
	return d
}

func (c *nfcConn) aioLoop() error {
	hdr := make([]byte, aioHeader)
	for {
		if _, err := io.ReadFull(c.rd, hdr); err != nil {
			return err
		}
		magic, typ, size, opID := le.Uint32(hdr), le.Uint32(hdr[4:]), le.Uint32(hdr[8:]), le.Uint32(hdr[12:])
		if magic != aioMagic {
			return fmt.Errorf("bad AIO magic %#x: closing", magic)
		}
		if size > 4096 {
			c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: AIO payload of %d bytes", size))
			return fmt.Errorf("AIO payload of %d bytes: closing", size)
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(c.rd, p); err != nil {
			return err
		}
		if n, ok := aioPayloadNeed[typ]; ok && size < n {
			c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: type %d payload of %d bytes, expected %d", typ, size, n))
			return fmt.Errorf("short type %d payload", typ)
		}
		if typ != aioOpenSess && !c.sessOpen {
			c.replyError(opID, errGeneric, "NFC protocol error: no AIO session open")
			if typ == aioIO || typ == aioOpenFile || typ == aioDDBGet {
				return fmt.Errorf("type %d before OPEN_SESSION (its extra bytes are unknown): closing", typ)
			}
			continue
		}
		switch typ {
		case aioOpenSess:
			c.openSession(opID, p)
		case aioSockOpts:
			r := make([]byte, 12)
			le.PutUint32(r[0:], 4<<20)
			le.PutUint32(r[4:], 4<<20)
			c.reply(typ, opID, r)
		case aioResPool:
			c.reply(typ, opID, make([]byte, 8))
		case aioOpenFile:
			pathLen := le.Uint32(p)
			if pathLen == 0 || pathLen > 4096 {
				c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: path length %d", pathLen))
				return fmt.Errorf("path length %d: closing", pathLen)
			}
			path := make([]byte, pathLen)
			if _, err := io.ReadFull(c.rd, path); err != nil {
				return err
			}
			c.wg.Add(1)
			go c.openFile(opID, p, string(path))
		case aioCloseFile:
			c.wg.Add(1)
			go c.closeFile(opID, le.Uint64(p))
		case aioDDBGet:
			keyLen := le.Uint32(p[8:])
			if keyLen > 4096 {
				c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: key length %d", keyLen))
				return fmt.Errorf("key length %d: closing", keyLen)
			}
			key := make([]byte, keyLen)
			if _, err := io.ReadFull(c.rd, key); err != nil {
				return err
			}
			c.wg.Add(1)
			go c.ddbGet(opID, le.Uint64(p), string(key))
		case aioQueryAlloc:
			c.wg.Add(1)
			go c.queryAllocated(opID, p)
		case aioIO:
			if err := c.io(opID, p); err != nil {
				return err
			}
		case aioCloseSess:
			c.wg.Wait()
			c.reply(typ, opID, make([]byte, 8))
			c.logf("session closed; waiting for the classic SESSION_COMPLETE")
			m := make([]byte, classicSize)
			if _, err := io.ReadFull(c.rd, m); err != nil {
				return fmt.Errorf("no SESSION_COMPLETE after CLOSE_SESSION: %v", err)
			}
			if t := le.Uint32(m); t != classicSessionComplete {
				return fmt.Errorf("message type %d after CLOSE_SESSION, expected 4", t)
			}
			return nil
		default:
			c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: AIO message type %d not supported", typ))
		}
		if c.isDropped() {
			return fmt.Errorf("connection dropped by fault drop_after_io")
		}
	}
}

func (c *nfcConn) openSession(opID uint32, p []byte) {
	f := c.srv.faults.snapshot()
	if f["open_session_refuse"] == "1" {
		c.logf("fault open_session_refuse")
		c.replyError(opID, errNoMemory, "NFC error: OPEN_SESSION refused (open_session_refuse fault)")
		return
	}
	size := le.Uint32(p[4:])
	max := faultInt(f, "max_buffer", faultInt(f, "max-buffer", defaultMaxBuf))
	if size == 0 {
		size = defaultBufSize
	}
	if int64(size) > max || size < 512 {
		c.logf("OPEN_SESSION buffers of %d bytes refused (max_buffer %d)", size, max)
		c.replyError(opID, errNoMemory, fmt.Sprintf("NFC error 5: Failed to allocate the requested %d bytes", int64(size)+24))
		return
	}
	c.bufSize = size
	c.sessOpen = true
	c.logf("AIO session open, buffers of %d bytes", size)
	c.reply(aioOpenSess, opID, make([]byte, 16))
}

func (c *nfcConn) openFile(opID uint32, p []byte, path string) {
	defer c.wg.Done()
	defer c.survive()
	flags := le.Uint32(p[20:])
	write := flags&openReadOnlyBit == 0
	c.logf("op %d: OPEN_FILE %q flags %#x", opID, path, flags)
	local, ok := c.ticket.Files[path]
	if !ok {
		c.replyError(opID, errNotAllowed, fmt.Sprintf("NFC error: file %s not permitted by this ticket", path))
		return
	}
	if ft := le.Uint32(p[16:]); ft != nfcDiskType {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: file type %d not supported (only 2, NFC_DISK)", ft))
		return
	}
	if write && !c.ticket.Write {
		c.replyError(opID, errReadOnly, "The file is read-only (NFC_FILE_READ_ONLY): the ticket does not allow writing")
		return
	}
	d, err := openDisk(c.srv.dir, path, local, write, flags, c.logf)
	if err != nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: cannot open %s: %v", path, err))
		return
	}
	c.mu.Lock()
	c.nextID++
	handle := c.nextID<<8 | 0x5a // opaque, never 0
	c.files[handle] = d
	c.mu.Unlock()
	cyl, heads, sectors := d.geometry()
	r := make([]byte, 60)
	le.PutUint64(r[8:], handle)
	le.PutUint32(r[16:], nfcDiskType)
	le.PutUint32(r[20:], flags)
	le.PutUint64(r[28:], d.pool.size)
	le.PutUint32(r[36:], 512)
	le.PutUint32(r[40:], cyl)
	le.PutUint32(r[44:], heads)
	le.PutUint32(r[48:], sectors)
	c.logf("op %d: handle %d, %d bytes, geometry %d/%d/%d", opID, handle, d.pool.size, cyl, heads, sectors)
	c.reply(aioOpenFile, opID, r)
}

func (c *nfcConn) closeFile(opID uint32, handle uint64) {
	defer c.wg.Done()
	defer c.survive()
	c.mu.Lock()
	d := c.files[handle]
	delete(c.files, handle)
	c.mu.Unlock()
	if d == nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: invalid file handle %d", handle))
		return
	}
	d.inflight.Wait()
	if err := d.close(); err != nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: flushing %s: %v", d.path, err))
		return
	}
	c.logf("op %d: CLOSE_FILE handle %d (%s)", opID, handle, d.path)
	c.reply(aioCloseFile, opID, make([]byte, 8))
}

func (c *nfcConn) ddbGet(opID uint32, handle uint64, key string) {
	defer c.wg.Done()
	defer c.survive()
	d := c.disk(handle)
	if d == nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: invalid file handle %d", handle))
		return
	}
	defer d.inflight.Done()
	v, ok := d.ddb()[key]
	c.logf("op %d: DDB_GET %q -> %q (found %v)", opID, key, v, ok)
	if !ok {
		c.reply(aioDDBGet, opID, make([]byte, 16))
		return
	}
	c.reply(aioDDBGet, opID, []byte(v))
}

func (c *nfcConn) queryAllocated(opID uint32, p []byte) {
	defer c.wg.Done()
	defer c.survive()
	handle, chunk, start, count := le.Uint64(p), le.Uint64(p[16:]), le.Uint64(p[24:]), le.Uint64(p[32:])
	d := c.disk(handle)
	if d == nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: invalid file handle %d", handle))
		return
	}
	defer d.inflight.Done()
	if c.srv.faults.snapshot()["no_query_allocated"] == "1" {
		c.logf("fault no_query_allocated")
		c.replyError(opID, errGeneric, "QueryAllocatedBlocks not supported")
		return
	}
	if chunk < 512 || chunk%512 != 0 || start%chunk != 0 || count == 0 || count > 1<<24 ||
		start > d.pool.size || count > (d.pool.size-start+chunk-1)/chunk {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: QueryAllocatedBlocks chunk %d start %d count %d "+
			"is not chunk-aligned within the disk's %d bytes", chunk, start, count, d.pool.size))
		return
	}
	ranges, err := d.allocated()
	if err != nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: %v", err))
		return
	}
	bm := bitmap(ranges, start, chunk, count)
	r := make([]byte, 48, 48+len(bm))
	le.PutUint64(r[16:], chunk)
	le.PutUint64(r[24:], start)
	le.PutUint64(r[32:], count)
	le.PutUint32(r[40:], uint32(len(bm)))
	c.logf("op %d: QUERY_ALLOCATED_BLOCKS chunk %d start %d count %d", opID, chunk, start, count)
	c.reply(aioQueryAlloc, opID, append(r, bm...))
}

func (c *nfcConn) isDropped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// ioAnswered counts IO replies for drop_after_io and cuts the connection (RST) after the Nth.
func (c *nfcConn) ioAnswered() {
	n := faultInt(c.srv.faults.snapshot(), "drop_after_io", 0)
	c.mu.Lock()
	c.ioDone++
	drop := n > 0 && c.ioDone >= n && !c.dropped
	if drop {
		c.dropped = true
	}
	c.mu.Unlock()
	if drop {
		c.logf("fault drop_after_io=%d: resetting the connection", n)
		c.raw.SetLinger(0)
		c.raw.Close()
	}
}

// fragmentOrder: the order fragments of one read go out in (shuffle is seeded by the request,
// so a failing test sees the same order again).
func fragmentOrder(n int, order string, seed int64) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	switch order {
	case "inorder":
	case "reverse":
		sort.Sort(sort.Reverse(sort.IntSlice(idx)))
	default:
		rand.New(rand.NewSource(seed)).Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	}
	return idx
}

func sleepMS(f map[string]string) {
	if ms := faultInt(f, "delay_ms", 0); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
}
