// A small NBD client for the NFC test server: the disk bytes the NFC server sends come from
// qemu-nbd, so what a test reads through NFC is what qemu makes of the VMDK, never what our own
// code would. Fixed newstyle handshake, NBD_OPT_GO (NBD_OPT_EXPORT_NAME when the server does not
// know GO), simple replies only, one request at a time per connection (nbdPool gives parallelism).
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const (
	nbdMagic        = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic     = 0x49484156454f5054 // "IHAVEOPT"
	nbdOptReplyMag  = 0x0003e889045565a9
	nbdRequestMagic = 0x25609513
	nbdSimpleReply  = 0x67446698

	nbdFlagFixedNewstyle = 1
	nbdFlagNoZeroes      = 2

	nbdOptExportName = 1
	nbdOptGo         = 7
	nbdRepAck        = 1
	nbdRepInfo       = 3
	nbdRepErrUnsup   = 0x80000001
	nbdInfoExport    = 0

	nbdCmdRead  = 0
	nbdCmdWrite = 1
	nbdCmdDisc  = 2
	nbdCmdFlush = 3

	// Reads and writes go to qemu-nbd in commands of at most nbdChunk, up to nbdWindow of them in
	// flight on one connection (qemu-nbd serves 16 per client at once). qemu-nbd allocates (mmap)
	// and frees a buffer per command: above 512 KiB that costs it ~3x the CPU per byte (page
	// faults, munmap's TLB shootdowns) of 256 KiB commands, nbdcopy's size.
	nbdChunk  = 256 << 10
	nbdWindow = 16
)

type nbdConn struct {
	c      net.Conn
	size   uint64
	cookie uint64
	req    [28]byte
	rep    [16]byte
	reqs   [nbdWindow * 28]byte
	bufs   net.Buffers
}

// nbdCmdError: the server answered the command with an error; the connection stays in step.
type nbdCmdError struct{ text string }

func (e *nbdCmdError) Error() string { return e.text }

func nbdDial(socket string) (*nbdConn, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return nil, err
	}
	n := &nbdConn{c: c}
	if err := n.handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("nbd handshake: %v", err)
	}
	return n, nil
}

func (n *nbdConn) handshake() error {
	n.c.SetDeadline(time.Now().Add(10 * time.Second))
	defer n.c.SetDeadline(time.Time{})
	var hello [18]byte
	if _, err := io.ReadFull(n.c, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != nbdOptMagic {
		return errors.New("not a fixed newstyle NBD server")
	}
	flags := binary.BigEndian.Uint16(hello[16:])
	if flags&nbdFlagFixedNewstyle == 0 {
		return errors.New("server lacks fixed newstyle")
	}
	noZeroes := flags&nbdFlagNoZeroes != 0
	client := uint32(nbdFlagFixedNewstyle)
	if noZeroes {
		client |= nbdFlagNoZeroes
	}
	if err := binary.Write(n.c, binary.BigEndian, client); err != nil {
		return err
	}
	// NBD_OPT_GO with the default export name "" and no information requests.
	opt := make([]byte, 16+4+2)
	binary.BigEndian.PutUint64(opt[0:], nbdOptMagic)
	binary.BigEndian.PutUint32(opt[8:], nbdOptGo)
	binary.BigEndian.PutUint32(opt[12:], 6)
	if _, err := n.c.Write(opt); err != nil {
		return err
	}
	for {
		var rep [20]byte
		if _, err := io.ReadFull(n.c, rep[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint64(rep[0:]) != nbdOptReplyMag {
			return errors.New("bad option reply magic")
		}
		typ := binary.BigEndian.Uint32(rep[12:])
		length := binary.BigEndian.Uint32(rep[16:])
		if length > 1<<20 {
			return fmt.Errorf("option reply of %d bytes", length)
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(n.c, data); err != nil {
			return err
		}
		switch {
		case typ == nbdRepAck:
			if n.size == 0 {
				return errors.New("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
			}
			return nil
		case typ == nbdRepInfo:
			if len(data) >= 12 && binary.BigEndian.Uint16(data) == nbdInfoExport {
				n.size = binary.BigEndian.Uint64(data[2:])
			}
		case typ == nbdRepErrUnsup:
			return n.exportName(noZeroes)
		case typ&0x80000000 != 0:
			return fmt.Errorf("NBD_OPT_GO refused (%#x): %s", typ, data)
		}
	}
}

func (n *nbdConn) exportName(noZeroes bool) error {
	opt := make([]byte, 16)
	binary.BigEndian.PutUint64(opt[0:], nbdOptMagic)
	binary.BigEndian.PutUint32(opt[8:], nbdOptExportName)
	if _, err := n.c.Write(opt); err != nil {
		return err
	}
	reply := make([]byte, 10)
	if !noZeroes {
		reply = make([]byte, 134)
	}
	if _, err := io.ReadFull(n.c, reply); err != nil {
		return err
	}
	n.size = binary.BigEndian.Uint64(reply)
	return nil
}

// do sends one command and waits for its simple reply, reading `into` for a read. A write's
// data goes out with its header in one writev, without a copy.
func (n *nbdConn) do(cmd uint16, offset uint64, length uint32, data []byte, into []byte) error {
	n.cookie++
	req := n.req[:]
	binary.BigEndian.PutUint32(req[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(req[4:], 0)
	binary.BigEndian.PutUint16(req[6:], cmd)
	binary.BigEndian.PutUint64(req[8:], n.cookie)
	binary.BigEndian.PutUint64(req[16:], offset)
	binary.BigEndian.PutUint32(req[24:], length)
	if len(data) > 0 {
		bufs := net.Buffers{req, data}
		if _, err := bufs.WriteTo(n.c); err != nil {
			return err
		}
	} else if _, err := n.c.Write(req); err != nil {
		return err
	}
	rep := n.rep[:]
	if _, err := io.ReadFull(n.c, rep); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(rep[0:]) != nbdSimpleReply || binary.BigEndian.Uint64(rep[8:]) != n.cookie {
		return errors.New("nbd: unexpected reply")
	}
	if e := binary.BigEndian.Uint32(rep[4:]); e != 0 {
		return &nbdCmdError{fmt.Sprintf("nbd: command %d at %d+%d failed with error %d", cmd, offset, length, e)}
	}
	if into != nil {
		if _, err := io.ReadFull(n.c, into); err != nil {
			return err
		}
	}
	return nil
}

func (n *nbdConn) close() {
	req := make([]byte, 28)
	binary.BigEndian.PutUint32(req[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(req[6:], nbdCmdDisc)
	n.c.SetWriteDeadline(time.Now().Add(time.Second))
	n.c.Write(req)
	n.c.Close()
}

// nbdPool: connections to one qemu-nbd export, each used by one request at a time, so
// concurrent NFC requests reach qemu in parallel. Connections are dialed when every open one is
// busy, up to max, and reused across requests; one that failed mid-command is dropped.
type nbdPool struct {
	socket string
	size   uint64
	max    int

	mu     sync.Mutex
	cond   *sync.Cond
	free   []*nbdConn
	open   int // dialed and not dropped: in free or in use
	closed bool
}

// newNBDPool dials the first connection (which learns the export's size) at once.
func newNBDPool(socket string, max int) (*nbdPool, error) {
	c, err := nbdDial(socket)
	if err != nil {
		return nil, err
	}
	p := &nbdPool{socket: socket, size: c.size, max: max, free: []*nbdConn{c}, open: 1}
	p.cond = sync.NewCond(&p.mu)
	return p, nil
}

func (p *nbdPool) get() (*nbdConn, error) {
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("nbd: file closed")
		}
		if n := len(p.free); n > 0 {
			c := p.free[n-1]
			p.free = p.free[:n-1]
			p.mu.Unlock()
			return c, nil
		}
		if p.open < p.max {
			p.open++
			p.mu.Unlock()
			c, err := nbdDial(p.socket)
			if err != nil {
				p.mu.Lock()
				p.open--
				p.cond.Broadcast()
				p.mu.Unlock()
				return nil, err
			}
			return c, nil
		}
		p.cond.Wait()
	}
}

func (p *nbdPool) put(c *nbdConn, err error) {
	if _, ok := err.(*nbdCmdError); err != nil && !ok {
		c.c.Close()
		c = nil
	}
	p.mu.Lock()
	if c == nil {
		p.open--
	} else {
		p.free = append(p.free, c)
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *nbdPool) with(f func(c *nbdConn) error) error {
	c, err := p.get()
	if err != nil {
		return err
	}
	err = f(c)
	p.put(c, err)
	return err
}

func (p *nbdPool) checkRange(offset uint64, length int) error {
	if offset > p.size || uint64(length) > p.size-offset {
		return fmt.Errorf("range %d+%d beyond the disk's %d bytes", offset, length, p.size)
	}
	return nil
}

func (p *nbdPool) readAt(buf []byte, offset uint64) error {
	if err := p.checkRange(offset, len(buf)); err != nil {
		return err
	}
	return p.with(func(c *nbdConn) error { return c.pipeline(nbdCmdRead, offset, buf) })
}

func (p *nbdPool) writeAt(buf []byte, offset uint64) error {
	if err := p.checkRange(offset, len(buf)); err != nil {
		return err
	}
	return p.with(func(c *nbdConn) error { return c.pipeline(nbdCmdWrite, offset, buf) })
}

// pipeline reads buf from (or writes it to) the export at offset in commands of nbdChunk bytes,
// nbdWindow of them sent in one writev and then answered, in whatever order qemu-nbd finishes
// them: a read's data lands straight in its place in buf. A command the server refuses is an
// nbdCmdError once all its window's replies are in (the connection stays in step).
func (n *nbdConn) pipeline(cmd uint16, offset uint64, buf []byte) error {
	var firstErr error
	for done := 0; done < len(buf); {
		base, start, count := n.cookie+1, done, 0
		n.bufs = n.bufs[:0]
		for count < nbdWindow && done < len(buf) {
			l := len(buf) - done
			if l > nbdChunk {
				l = nbdChunk
			}
			req := n.reqs[count*28 : count*28+28]
			n.cookie++
			binary.BigEndian.PutUint32(req[0:], nbdRequestMagic)
			binary.BigEndian.PutUint16(req[4:], 0)
			binary.BigEndian.PutUint16(req[6:], cmd)
			binary.BigEndian.PutUint64(req[8:], n.cookie)
			binary.BigEndian.PutUint64(req[16:], offset+uint64(done))
			binary.BigEndian.PutUint32(req[24:], uint32(l))
			if cmd == nbdCmdWrite {
				n.bufs = append(n.bufs, req, buf[done:done+l])
			}
			count++
			done += l
		}
		if cmd != nbdCmdWrite {
			// Read headers lie side by side: one slice for the window.
			n.bufs = append(n.bufs, n.reqs[:count*28])
		}
		bufs := n.bufs // WriteTo consumes this slice header, not n.bufs
		if _, err := bufs.WriteTo(n.c); err != nil {
			return err
		}
		var got [nbdWindow]bool
		for i := 0; i < count; i++ {
			rep := n.rep[:]
			if _, err := io.ReadFull(n.c, rep); err != nil {
				return err
			}
			k := binary.BigEndian.Uint64(rep[8:]) - base
			if binary.BigEndian.Uint32(rep[0:]) != nbdSimpleReply || k >= uint64(count) || got[k] {
				return errors.New("nbd: unexpected reply")
			}
			got[k] = true
			from := start + int(k)*nbdChunk
			to := from + nbdChunk
			if to > done {
				to = done
			}
			if e := binary.BigEndian.Uint32(rep[4:]); e != 0 {
				if firstErr == nil {
					firstErr = &nbdCmdError{fmt.Sprintf("nbd: command %d at %d+%d failed with error %d", cmd, offset+uint64(from), to-from, e)}
				}
				continue
			}
			if cmd == nbdCmdRead {
				if _, err := io.ReadFull(n.c, buf[from:to]); err != nil {
					return err
				}
			}
		}
	}
	return firstErr
}

func (p *nbdPool) flush() error {
	return p.with(func(c *nbdConn) error { return c.do(nbdCmdFlush, 0, 0, nil, nil) })
}

// close waits for requests in flight (each returns its connection) and disconnects.
func (p *nbdPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for len(p.free) < p.open {
		p.cond.Wait()
	}
	free := p.free
	p.free, p.open = nil, 0
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, c := range free {
		c.close()
	}
}
