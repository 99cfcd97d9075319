// NFC wire formats the test server speaks (the server side of docs/reference nfc.md): the
// classic 264-byte messages, the 16-byte AIO header, the per-fragment compressions, and the
// fault file tests use to make the server misbehave on purpose.
package main

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

const (
	classicSize = 264

	classicSessionComplete = 4
	classicError           = 20
	classicSessionParams   = 33
	classicParamsReply     = 36
	classicHandshake       = 43
	classicVersion         = 51
	classicAioOpen         = 52
	classicConnData        = 54
	classicFeatures        = 55

	aioMagic      = 0xA100DA7A
	aioHeader     = 16
	aioError      = 1
	aioOpenSess   = 2
	aioCloseSess  = 3
	aioOpenFile   = 4
	aioCloseFile  = 5
	aioIO         = 7
	aioSockOpts   = 9
	aioDDBGet     = 11
	aioQueryAlloc = 13
	aioResPool    = 22

	ioWrite = 0
	ioRead  = 1

	compNone   = 0
	compZlib   = 1
	compFastLZ = 2
	compSkipZ  = 3

	openReadOnlyBit = 0x04
	nfcDiskType     = 2

	// Error codes of AIO error replies: only 5 (allocation) is known from real hosts; the
	// others are ours, and a client should show the text rather than interpret them.
	errGeneric    = 1
	errNotAllowed = 4
	errNoMemory   = 5
	errReadOnly   = 11

	maxPayload     = 64 << 20 // no request, reply or write may be larger
	defaultBufSize = 64 << 10
	defaultMaxBuf  = 2 << 20
	skipzMinRun    = 512 // zero runs shorter than this stay in a SkipZ fragment
)

var le = binary.LittleEndian

func classicMsg(typ uint32) []byte {
	m := make([]byte, classicSize)
	le.PutUint32(m, typ)
	return m
}

// classicErrorMsg: type 20 {u32 errorType, u32 errorCode, u32 msgLen} then the text (cut to fit).
func classicErrorMsg(code uint32, text string) []byte {
	m := classicMsg(classicError)
	if len(text) > classicSize-16-1 {
		text = text[:classicSize-16-1]
	}
	le.PutUint32(m[4:], 1)
	le.PutUint32(m[8:], code)
	le.PutUint32(m[12:], uint32(len(text)))
	copy(m[16:], text)
	return m
}

func aioFrame(typ, opID uint32, payload []byte, extra []byte) []byte {
	f := make([]byte, aioHeader, aioHeader+len(payload)+len(extra))
	le.PutUint32(f[0:], aioMagic)
	le.PutUint32(f[4:], typ)
	le.PutUint32(f[8:], uint32(len(payload)))
	le.PutUint32(f[12:], opID)
	f = append(f, payload...)
	return append(f, extra...)
}

// errorPayload: u64 code, u32 0, u32 textLen, then the text. The text is counted in the header's
// size, so a client that always reads `size` bytes gets all of it.
func errorPayload(code uint64, text string) []byte {
	p := make([]byte, 16, 16+len(text))
	le.PutUint64(p[0:], code)
	le.PutUint32(p[12:], uint32(len(text)))
	return append(p, text...)
}

// ioPayload: the 44-byte IO layout shared by read replies, write fragments and the write reply.
func ioPayload(op uint64, offset uint64, total, fragOff, fragLen, extraLen uint32) []byte {
	p := make([]byte, 44)
	le.PutUint64(p[8:], op)
	le.PutUint64(p[16:], offset)
	le.PutUint32(p[24:], total)
	le.PutUint32(p[28:], fragOff)
	le.PutUint32(p[32:], fragLen)
	le.PutUint32(p[36:], extraLen)
	return p
}

func zlibCompress(data []byte) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// zlibDecompress insists on exactly want bytes: a short or long stream is the client's error.
func zlibDecompress(data []byte, want int) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	out := make([]byte, want)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("zlib stream shorter than %d bytes: %v", want, err)
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n != 0 {
		return nil, fmt.Errorf("zlib stream longer than %d bytes", want)
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// skipzCompress: {u32 total (uncompressed bytes), u32 0, then (u32 offset, u32 length, bytes)...}
// for the data between zero runs; zero runs are found in skipzMinRun blocks.
func skipzCompress(data []byte) []byte {
	out := make([]byte, 8, len(data)/2+64)
	le.PutUint32(out[0:], uint32(len(data)))
	start := -1
	flush := func(end int) {
		if start >= 0 {
			var h [8]byte
			le.PutUint32(h[0:], uint32(start))
			le.PutUint32(h[4:], uint32(end-start))
			out = append(out, h[:]...)
			out = append(out, data[start:end]...)
			start = -1
		}
	}
	for off := 0; off < len(data); off += skipzMinRun {
		end := off + skipzMinRun
		if end > len(data) {
			end = len(data)
		}
		if allZero(data[off:end]) {
			flush(off)
		} else if start < 0 {
			start = off
		}
	}
	flush(len(data))
	return out
}

func skipzDecompress(data []byte, want int) ([]byte, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("SkipZ data of %d bytes has no header", len(data))
	}
	if total := le.Uint32(data); int(total) != want {
		return nil, fmt.Errorf("SkipZ total %d, fragment length %d", total, want)
	}
	out := make([]byte, want)
	for p := 8; p < len(data); {
		if len(data)-p < 8 {
			return nil, fmt.Errorf("SkipZ run header cut at byte %d", p)
		}
		off, n := le.Uint32(data[p:]), le.Uint32(data[p+4:])
		p += 8
		if uint64(off)+uint64(n) > uint64(want) || uint64(n) > uint64(len(data)-p) {
			return nil, fmt.Errorf("SkipZ run %d+%d outside the fragment or the data", off, n)
		}
		copy(out[off:], data[p:p+int(n)])
		p += int(n)
	}
	return out, nil
}

// compress returns the bytes to send and the compression actually used: 0 when the codec is
// missing (FastLZ) or the result would not be smaller.
func compress(c uint32, data []byte) ([]byte, uint32) {
	var out []byte
	switch c {
	case compZlib:
		out = zlibCompress(data)
	case compSkipZ:
		out = skipzCompress(data)
	default:
		return data, compNone
	}
	if len(out) >= len(data) {
		return data, compNone
	}
	return out, c
}

func decompress(c uint32, data []byte, want int) ([]byte, error) {
	switch c {
	case compNone:
		if len(data) != want {
			return nil, fmt.Errorf("uncompressed fragment of %d bytes, header says %d", len(data), want)
		}
		return data, nil
	case compZlib:
		return zlibDecompress(data, want)
	case compSkipZ:
		return skipzDecompress(data, want)
	}
	return nil, fmt.Errorf("compression %d not supported by this server", c)
}

// faults: DIR/faults, re-read when its identity (inode, size, mtime) changes. One-shot faults
// and counters live here in memory and start again whenever the file changes.
type faults struct {
	mu       sync.Mutex
	path     string
	stamp    string
	values   map[string]string
	failIO   int
	oneShots map[string]bool // used up one-shot keys
}

func newFaults(path string) *faults {
	return &faults{path: path, values: map[string]string{}, oneShots: map[string]bool{}}
}

func (f *faults) refreshLocked() {
	st, err := os.Stat(f.path)
	stamp := "absent"
	if err == nil {
		ino := uint64(0)
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = s.Ino
		}
		stamp = fmt.Sprintf("%d/%d/%d", ino, st.Size(), st.ModTime().UnixNano())
	}
	if stamp == f.stamp {
		return
	}
	f.stamp = stamp
	f.values = map[string]string{}
	f.oneShots = map[string]bool{}
	f.failIO = 0
	data, _ := os.ReadFile(f.path)
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if kv := strings.SplitN(line, "=", 2); len(kv) == 2 {
			f.values[strings.TrimSpace(kv[0])] = strings.TrimSpace(kv[1])
		}
	}
	if v, err := strconv.Atoi(f.values["fail_io"]); err == nil {
		f.failIO = v
	}
}

// snapshot: the current key=value set (after a re-read if the file changed).
func (f *faults) snapshot() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLocked()
	out := make(map[string]string, len(f.values))
	for k, v := range f.values {
		out[k] = v
	}
	return out
}

func faultInt(m map[string]string, key string, def int64) int64 {
	if v, ok := m[key]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

// take consumes a one-shot key (bad_magic=1, oversized_fragment=1, ...): true once per file version.
func (f *faults) take(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLocked()
	if f.values[key] != "1" || f.oneShots[key] {
		return false
	}
	f.oneShots[key] = true
	return true
}

// takeFailIO: true (and one less left) while fail_io has a count.
func (f *faults) takeFailIO() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLocked()
	if f.failIO <= 0 {
		return false
	}
	f.failIO--
	return true
}
