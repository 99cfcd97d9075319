// IO requests (AIO type 7): reads answered as fragments (possibly out of order, compressed, or
// spoiled on purpose by the fault file), writes gathered from their fragments and answered once.
package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

const (
	maxPendingWrites = 256 << 20 // bytes of unfinished writes one connection may hold

	// A read fragment's header and IO payload, written in place just before its data.
	fragHeader = aioHeader + 44

	bufMinShift = 12 // buffer classes: 4 KiB ... 8 MiB (plus bufSlack)
	bufMaxShift = 23
	bufSlack    = 4096 // so that 2 MiB of data and a fragment header fit the 2 MiB class
)

// Buffers for reads and writes, reused across requests (no allocating and zeroing per request):
// a free list per power-of-two class, keeping up to bufKeepBytes of each class (a sync.Pool would
// be emptied at every GC); larger requests (up to maxPayload) get buffers of their own.
const bufKeepBytes = 64 << 20

type bufList struct {
	mu   sync.Mutex
	free []*[]byte
}

var bufLists [bufMaxShift - bufMinShift + 1]bufList

func bufClass(n int) int {
	for k := 0; k < len(bufLists); k++ {
		if n <= 1<<(bufMinShift+k)+bufSlack {
			return k
		}
	}
	return -1
}

// getBuf: a buffer of n bytes, its contents undefined.
func getBuf(n int) *[]byte {
	k := bufClass(n)
	if k < 0 {
		b := make([]byte, n)
		return &b
	}
	l := &bufLists[k]
	l.mu.Lock()
	if m := len(l.free); m > 0 {
		b := l.free[m-1]
		l.free = l.free[:m-1]
		l.mu.Unlock()
		*b = (*b)[:n]
		return b
	}
	l.mu.Unlock()
	b := make([]byte, n, 1<<(bufMinShift+k)+bufSlack)
	return &b
}

func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	size := cap(*b)
	k := bufClass(size)
	if k < 0 || size != 1<<(bufMinShift+k)+bufSlack {
		return
	}
	l := &bufLists[k]
	l.mu.Lock()
	if (len(l.free)+1)*size <= bufKeepBytes || len(l.free) < 2 {
		l.free = append(l.free, b)
	}
	l.mu.Unlock()
}

// ioCheck applies the checks every IO request gets, reads and writes alike: the size limits
// (max_io and ours) and fail_io. A non-empty text means: answer with this error.
func (c *nfcConn) ioCheck(f map[string]string, length uint32) (uint64, string) {
	need := int64(length) + 24
	if max := faultInt(f, "max_io", 0); max > 0 && int64(length) > max {
		c.logf("fault max_io=%d refuses %d bytes", max, length)
		return errNoMemory, fmt.Sprintf("NFC error 5: Failed to allocate the requested %d bytes", need)
	}
	if length > maxPayload {
		return errNoMemory, fmt.Sprintf("NFC error 5: Failed to allocate the requested %d bytes", need)
	}
	if length == 0 {
		return errGeneric, "NFC error: IO of 0 bytes"
	}
	if c.srv.faults.takeFailIO() {
		text := "fail_io fault injected"
		if t, ok := f["error_text"]; ok {
			text = t
		}
		c.logf("fault fail_io: %q", text)
		return errGeneric, text
	}
	return 0, ""
}

// io is called by the reader for every type-7 frame; write fragments' data is read here, so the
// stream stays in step whatever the request's fate.
func (c *nfcConn) io(opID uint32, p []byte) error {
	handle, op := le.Uint64(p), le.Uint64(p[8:])
	dir, comp := uint32(op), uint32(op>>32)
	offset, total := le.Uint64(p[16:]), le.Uint32(p[24:])
	fragOff, fragLen, extraLen := le.Uint32(p[28:]), le.Uint32(p[32:]), le.Uint32(p[36:])
	switch dir {
	case ioRead:
		c.wg.Add(1)
		go c.read(opID, handle, comp, offset, total)
		return nil
	case ioWrite:
	default:
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: IO direction %d", dir))
		return fmt.Errorf("IO direction %d: closing", dir)
	}
	if extraLen > maxPayload || fragLen > maxPayload {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: write fragment of %d/%d bytes", extraLen, fragLen))
		return fmt.Errorf("write fragment of %d bytes: closing", extraLen)
	}
	pw := c.writes[opID]
	if pw == nil {
		pw = &pendingWrite{handle: handle, offset: offset, total: total, seen: map[uint32]bool{}}
		c.writes[opID] = pw
		f := c.srv.faults.snapshot()
		pending := uint64(0)
		for _, w := range c.writes {
			pending += uint64(len(w.data))
		}
		pw.errCode, pw.errText = c.ioCheck(f, total)
		if pw.errText == "" && pending+uint64(total) > maxPendingWrites {
			pw.errCode, pw.errText = errNoMemory, fmt.Sprintf("NFC error 5: Failed to allocate the requested %d bytes", int64(total)+24)
		}
		if pw.errText == "" {
			if pw.disk = c.disk(handle); pw.disk == nil {
				pw.errCode, pw.errText = errGeneric, fmt.Sprintf("NFC error: invalid file handle %d", handle)
			} else if !pw.disk.write {
				pw.errCode, pw.errText = errReadOnly, "The file is read-only (NFC_FILE_READ_ONLY): opened without write access"
			} else if offset > pw.disk.pool.size || uint64(total) > pw.disk.pool.size-offset {
				pw.errCode, pw.errText = errGeneric, fmt.Sprintf("NFC error: write %d+%d beyond the disk's %d bytes", offset, total, pw.disk.pool.size)
			} else {
				pw.buf = getBuf(int(total))
				pw.data = *pw.buf
				// Zeroed as a fresh buffer would be: fragments that overlap leave no old bytes.
				for i := range pw.data {
					pw.data[i] = 0
				}
			}
		}
	} else if pw.handle != handle || pw.offset != offset || pw.total != total {
		c.replyError(opID, errGeneric, "NFC protocol error: write fragments of one opId disagree on handle, offset or length")
		return fmt.Errorf("inconsistent write fragments: closing")
	}
	if fragLen == 0 || uint64(fragOff)+uint64(fragLen) > uint64(total) || pw.seen[fragOff] {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC protocol error: write fragment %d+%d of a %d-byte write", fragOff, fragLen, total))
		return fmt.Errorf("bad write fragment: closing")
	}
	pw.seen[fragOff] = true
	pw.got += uint64(fragLen)
	if pw.errText == "" && comp == compNone && extraLen == fragLen {
		// Plain data: straight into the write's buffer.
		if _, err := io.ReadFull(c.rd, pw.data[fragOff:fragOff+fragLen]); err != nil {
			return err
		}
	} else {
		scratch := getBuf(int(extraLen))
		data := *scratch
		if _, err := io.ReadFull(c.rd, data); err != nil {
			putBuf(scratch)
			return err
		}
		if pw.errText == "" {
			plain, err := decompress(comp, data, int(fragLen))
			if err != nil {
				pw.errCode, pw.errText = errGeneric, fmt.Sprintf("NFC error: write fragment at %d: %v", fragOff, err)
			} else {
				copy(pw.data[fragOff:], plain)
				if comp != compNone {
					pw.compUsed = true
				}
			}
		}
		putBuf(scratch)
	}
	if pw.got < uint64(total) {
		return nil
	}
	delete(c.writes, opID)
	c.wg.Add(1)
	go c.finishWrite(opID, pw)
	return nil
}

func (c *nfcConn) finishWrite(opID uint32, pw *pendingWrite) {
	defer c.wg.Done()
	defer c.survive()
	if pw.disk != nil {
		defer pw.disk.inflight.Done()
	}
	defer putBuf(pw.buf)
	f := c.srv.faults.snapshot()
	defer c.ioAnswered()
	// delay_ms: the latency of one request, once before its reply.
	sleepMS(f)
	if pw.errText == "" {
		start := time.Now()
		if err := pw.disk.pool.writeAt(pw.data, pw.offset); err != nil {
			pw.errCode, pw.errText = errGeneric, fmt.Sprintf("NFC error: writing %s: %v", pw.disk.path, err)
		}
		pw.disk.forgetAllocation()
		c.logf("op %d: write %d+%d (%d fragments, compressed %v) in %v", opID, pw.offset, pw.total, len(pw.seen), pw.compUsed, time.Since(start))
	}
	if pw.errText != "" {
		c.replyError(opID, pw.errCode, pw.errText)
		return
	}
	c.reply(aioIO, opID, ioPayload(ioWrite, pw.offset, pw.total, 0, pw.total, 0))
}

// dropPendingWrites releases what unfinished writes hold when the connection ends.
func (c *nfcConn) dropPendingWrites() {
	for id, pw := range c.writes {
		if pw.disk != nil {
			pw.disk.inflight.Done()
		}
		putBuf(pw.buf)
		delete(c.writes, id)
	}
}

// read answers one read request: delay_ms once (the request's latency; requests in flight wait
// at the same time, each in its goroutine), the data from qemu-nbd straight into a pooled buffer
// that keeps fragHeader bytes free before it, then each fragment as one write of its header
// (laid in place just before the fragment's data, the bytes it covers put back afterwards) and
// data, unless compression or a fault needs a frame of its own.
func (c *nfcConn) read(opID uint32, handle uint64, comp uint32, offset uint64, total uint32) {
	defer c.wg.Done()
	defer c.survive()
	f := c.srv.faults.snapshot()
	defer c.ioAnswered()
	sleepMS(f)
	if code, text := c.ioCheck(f, total); text != "" {
		c.replyError(opID, code, text)
		return
	}
	d := c.disk(handle)
	if d == nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: invalid file handle %d", handle))
		return
	}
	defer d.inflight.Done()
	if offset > d.pool.size || uint64(total) > d.pool.size-offset {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: read %d+%d beyond the disk's %d bytes", offset, total, d.pool.size))
		return
	}
	bp := getBuf(fragHeader + int(total))
	defer putBuf(bp)
	buf := *bp
	data := buf[fragHeader:]
	if err := d.pool.readAt(data, offset); err != nil {
		c.replyError(opID, errGeneric, fmt.Sprintf("NFC error: reading %s: %v", d.path, err))
		return
	}
	frag := uint32(c.bufSize)
	if n := faultInt(f, "fragment", 0); n > 0 && n < int64(frag) {
		frag = uint32(n)
	}
	if f["fragment"] != "" || f["order"] != "" || f["delay_ms"] != "" {
		c.logf("op %d: faults fragment=%q order=%q delay_ms=%q on a %d-byte read", opID, f["fragment"], f["order"], f["delay_ms"], total)
	}
	count := int((total + frag - 1) / frag)
	order := fragmentOrder(count, f["order"], int64(offset)^int64(total)<<20^int64(opID))
	oversized := c.srv.faults.take("oversized_fragment")
	overlap := c.srv.faults.take("overlap_fragment")
	var saved [fragHeader]byte
	for i, k := range order {
		fo := uint32(k) * frag
		fl := frag
		if fo+fl > total {
			fl = total - fo
		}
		chunk := data[fo : fo+fl]
		wire, used := compress(comp, chunk)
		var frame []byte
		inPlace := false
		if oversized && k == count-1 {
			// The fragment at the end of the request claims 512 bytes more than it has room for.
			c.logf("fault oversized_fragment: fragment %d+%d of a %d-byte read", fo, fl+512, total)
			fl += 512
			wire, used = append(append([]byte(nil), chunk...), make([]byte, 512)...), compNone
			frame = aioFrame(aioIO, opID, ioPayload(ioRead|uint64(used)<<32, offset, total, fo, fl, uint32(len(wire))), wire)
		} else if used != compNone {
			frame = aioFrame(aioIO, opID, ioPayload(ioRead|uint64(used)<<32, offset, total, fo, fl, uint32(len(wire))), wire)
		} else {
			// buf[fo : fo+fragHeader] ends where this fragment's data starts.
			inPlace = true
			frame = buf[fo : fragHeader+fo+fl]
			copy(saved[:], frame[:fragHeader])
			putFragHeader(frame, opID, offset, total, fo, fl)
		}
		err := c.send(frame)
		if err == nil && overlap && i == 0 {
			c.logf("fault overlap_fragment: fragment %d+%d sent twice", fo, fl)
			err = c.send(frame)
		}
		if inPlace {
			copy(frame[:fragHeader], saved[:])
		}
		if err != nil {
			return
		}
	}
}

// putFragHeader lays a read fragment's AIO header and IO payload (uncompressed data) at h[0:60].
func putFragHeader(h []byte, opID uint32, offset uint64, total, fragOff, fragLen uint32) {
	h = h[:fragHeader]
	le.PutUint32(h[0:], aioMagic)
	le.PutUint32(h[4:], aioIO)
	le.PutUint32(h[8:], 44)
	le.PutUint32(h[12:], opID)
	p := h[aioHeader:]
	le.PutUint64(p[0:], 0)
	le.PutUint64(p[8:], ioRead)
	le.PutUint64(p[16:], offset)
	le.PutUint32(p[24:], total)
	le.PutUint32(p[28:], fragOff)
	le.PutUint32(p[32:], fragLen)
	le.PutUint32(p[36:], fragLen)
	le.PutUint32(p[40:], 0)
}
