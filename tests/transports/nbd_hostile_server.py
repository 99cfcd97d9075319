#!/usr/bin/env python3
"""A deliberately misbehaving NBD server for nbd_connection_test.cc.

Usage: nbd_hostile_server.py SOCKET_PATH MODE

It negotiates like a fixed newstyle server (structured replies, base:allocation as context 7,
NBD_OPT_GO) over a Unix socket, serves a 1 MiB export whose byte i is i % 251, and then breaks
the protocol in the way MODE names. Every connection is served in its own thread, so the test's
readiness probe (connect, close) does no harm.
"""
import os
import socket
import struct
import sys
import threading

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC = 0x3E889045565A9
SIMPLE = 0x67446698
STRUCT = 0x668E33EF
SIZE = 1 << 20
CONTEXT = 7

OPT_EXPORT_NAME, OPT_STARTTLS, OPT_GO, OPT_SR, OPT_SET_META = 1, 5, 7, 8, 10
REP_ACK, REP_INFO, REP_META = 1, 3, 4
ERR = 1 << 31
ERR_UNSUP, ERR_POLICY, ERR_UNKNOWN = ERR | 1, ERR | 2, ERR | 6

DATA = (bytes(range(251)) * (SIZE // 251 + 1))[:SIZE]


def recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        part = c.recv(n - len(buf))
        if not part:
            raise EOFError
        buf += part
    return buf


def opt_reply(c, opt, typ, data=b""):
    c.sendall(struct.pack(">QIII", REPLYMAGIC, opt, typ, len(data)) + data)


def handshake(c, mode):
    """Returns True when the transmission phase starts, and whether replies are structured."""
    c.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, 3))
    recv_exact(c, 4)
    structured = False
    while True:
        magic, opt, length = struct.unpack(">QII", recv_exact(c, 16))
        data = recv_exact(c, length)
        if opt == OPT_STARTTLS:
            opt_reply(c, opt, ERR_POLICY, b"no TLS here")
        elif opt == OPT_SR:
            if mode == "huge_option_reply":
                c.sendall(struct.pack(">QIII", REPLYMAGIC, opt, REP_ACK, 0x7FFFFFFF))
                c.sendall(b"\0" * 4096)
                return None
            if mode in ("go_unsup", "no_structured"):
                opt_reply(c, opt, ERR_UNSUP)
            else:
                structured = True
                opt_reply(c, opt, REP_ACK)
        elif opt == OPT_SET_META:
            opt_reply(c, opt, REP_META, struct.pack(">I", CONTEXT) + b"base:allocation")
            opt_reply(c, opt, REP_ACK)
        elif opt == OPT_GO:
            if mode == "go_unsup":
                opt_reply(c, opt, ERR_UNSUP)
                continue
            if mode == "unknown_export":
                opt_reply(c, opt, ERR_UNKNOWN, b"no export called that here")
                return None
            if mode == "bad_block_size":
                opt_reply(c, opt, REP_INFO, struct.pack(">HIII", 3, 3, 4096, 65536))
            opt_reply(c, opt, REP_INFO, struct.pack(">HQH", 0, SIZE, 1 | 4 | 32 | 64))
            opt_reply(c, opt, REP_ACK)
            return structured
        elif opt == OPT_EXPORT_NAME:
            c.sendall(struct.pack(">QH", SIZE, 1 | 4))
            return structured
        else:
            opt_reply(c, opt, ERR_UNSUP)


def chunk(c, flags, typ, cookie, payload):
    c.sendall(struct.pack(">IHHQI", STRUCT, flags, typ, cookie, len(payload)) + payload)


def data_chunk(c, cookie, off, data, done):
    chunk(c, 1 if done else 0, 1, cookie, struct.pack(">Q", off) + data)


def serve(c, mode):
    structured = handshake(c, mode)
    if structured is None:
        return
    while True:
        magic, flags, typ, cookie, off, length = struct.unpack(">IHHQQI", recv_exact(c, 28))
        if typ == 1:
            recv_exact(c, length)
        if typ == 2:  # NBD_CMD_DISC: leave a mark the test can look for
            open(SOCK_PATH + ".disc", "w").close()
            return
        if mode == "never_reply":
            continue
        if mode == "bad_magic":
            c.sendall(struct.pack(">IIQ", 0xDEADBEEF, 0, cookie))
            continue
        if mode == "unknown_cookie":
            c.sendall(struct.pack(">IIQ", SIMPLE, 0, cookie ^ 0x5A5A5A5A))
            continue
        if typ == 7:  # block status
            if mode == "huge_status":
                c.sendall(struct.pack(">IHHQI", STRUCT, 1, 5, cookie, 0x7FFFFFF0))
            elif mode == "bad_context":
                chunk(c, 1, 5, cookie, struct.pack(">III", CONTEXT + 1, length, 0))
            else:
                half = length // 2
                chunk(c, 1, 5, cookie, struct.pack(">IIIII", CONTEXT, half, 0, length, 3))
            continue
        if typ != 0:
            if mode == "enospc" and typ == 1:
                c.sendall(struct.pack(">IIQ", SIMPLE, 28, cookie))
            else:
                c.sendall(struct.pack(">IIQ", SIMPLE, 0, cookie))
            continue
        want = DATA[off:off + length]
        if not structured:
            c.sendall(struct.pack(">IIQ", SIMPLE, 0, cookie) + want)
        elif mode == "chunk_outside":
            data_chunk(c, cookie, off + length, want, True)
        elif mode == "chunk_too_long":
            c.sendall(struct.pack(">IHHQI", STRUCT, 1, 1, cookie, 0xFFFFFFF0))
            c.sendall(struct.pack(">Q", off))
        elif mode == "close_mid_reply":
            c.sendall(struct.pack(">IHHQI", STRUCT, 1, 1, cookie, 8 + length))
            c.sendall(struct.pack(">Q", off) + want[: length // 2])
            c.shutdown(socket.SHUT_RDWR)
            return
        elif mode == "short_coverage":
            data_chunk(c, cookie, off, want[: length // 2], True)
        elif mode == "unknown_chunk":
            chunk(c, 1, 9, cookie, b"abcd")
        elif mode == "overlap_next":  # a chunk running into one that came before
            half = length // 2
            data_chunk(c, cookie, off + half, want[half:], False)
            data_chunk(c, cookie, off, want[: half + 1], True)
        elif mode == "overlap_prev":  # a chunk starting inside one that came before
            data_chunk(c, cookie, off, want, False)
            data_chunk(c, cookie, off + 1, want[1:2], True)
        elif mode == "error_chunk":
            msg = b"disk on fire"
            chunk(c, 1, (1 << 15) + 1, cookie, struct.pack(">IH", 5, len(msg)) + msg)
        elif mode == "pieces":
            # Second half first as data, then a hole in the first quarter, then the data of
            # the second quarter: reassembly must put each where it belongs.
            half, quarter = length // 2, length // 4
            data_chunk(c, cookie, off + half, want[half:], False)
            chunk(c, 0, 2, cookie, struct.pack(">QI", off, quarter))
            data_chunk(c, cookie, off + quarter, want[quarter:half], True)
        else:
            data_chunk(c, cookie, off, want, True)


def connection(c, mode):
    try:
        if mode == "silent":
            c.recv(1)  # says nothing, waits for the client to give up
            return
        serve(c, mode)
    except (EOFError, OSError):
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass


SOCK_PATH = ""


def main():
    global SOCK_PATH
    path, mode = sys.argv[1], sys.argv[2]
    SOCK_PATH = path
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path + ".tmp")
    s.listen(16)
    os.rename(path + ".tmp", path)  # the socket appears only once it accepts
    while True:
        c, _ = s.accept()
        threading.Thread(target=connection, args=(c, mode), daemon=True).start()


if __name__ == "__main__":
    main()
