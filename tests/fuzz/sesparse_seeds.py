#!/usr/bin/env python3
"""SEsparse seeds for vmdk_fuzz (framed "VXFZ" inputs, see vmdk_fuzz.cc), made at fuzz time by
scripts/test from the facts of docs/reference/vmdk-format.md §9; nothing else makes SEsparse files.

usage: sesparse_seeds.py SEED_DIR BASE_VMDK
  BASE_VMDK: a small qemu-made monolithicSparse disk; one seed is an SEsparse child of it.
"""
import os
import re
import struct
import sys

GRAIN = 4096
GT_ENTRIES = 4096  # u64 entries of one 64-sector grain table


def extent(capacity_sectors, grains, dirty=False):
    """grains: {grain index: ('data', bytes) | ('zero',) | ('unmapped',)}"""
    n_gd = -(-capacity_sectors // 8 // GT_ENTRIES) or 1
    gd, gd_sectors = 16, -(-n_gd * 8 // 512)
    gts = -(-(gd + gd_sectors) // 8) * 8
    gts_size = n_gd * 64
    bitmap = gts + gts_size
    backmap = bitmap + 8
    grains_off = backmap + 8
    data = sorted(g for g, v in grains.items() if v[0] == 'data')
    f = bytearray((grains_off + len(data) * 8) * 512)
    tables = sorted({g // GT_ENTRIES for g in grains}, reverse=True)
    table_of = {gdi: i for i, gdi in enumerate(tables)}
    hdr = [0xcafebabe, 0x0000000200000001, capacity_sectors, 8, 64, 0, 0, 0, 0, 0,
           1, 1, 2, 1, 8, 8, gd, gd_sectors, gts, gts_size, bitmap, 8, backmap, 8,
           grains_off, len(data) * 8]
    f[0:208] = struct.pack('<26Q', *hdr)
    f[512:544] = struct.pack('<4Q', 0xcafecafe, len(tables), 1, 1 if dirty else 0)
    for gdi, t in table_of.items():
        struct.pack_into('<Q', f, gd * 512 + gdi * 8, 0x10000000 << 32 | t)
    for g, v in grains.items():
        at = (gts + table_of[g // GT_ENTRIES] * 64) * 512 + (g % GT_ENTRIES) * 8
        if v[0] == 'data':
            c = len(data) - 1 - data.index(g)  # clusters in reverse order
            gte = 3 << 60 | (c & 0xfff) << 48 | c >> 12
            f[(grains_off + c * 8) * 512:][:GRAIN] = v[1].ljust(GRAIN, b'\0')
        else:
            gte = (1 if v[0] == 'unmapped' else 2) << 60
        struct.pack_into('<Q', f, at, gte)
    return bytes(f)


def descriptor(name, capacity_sectors, parent=None, parent_cid=0xffffffff):
    hint = 'parentFileNameHint="%s"\n' % parent if parent else ''
    return ('# Disk DescriptorFile\nversion=1\nCID=5e5e0001\nparentCID=%08x\n'
            'createType="seSparse"\n%s# Extent description\nRW %d SESPARSE "%s-sesparse.vmdk"\n'
            '\n# The Disk Data Base\n#DDB\n' % (parent_cid, hint, capacity_sectors, name)).encode()


def frame(path, files):
    with open(path, 'wb') as out:
        out.write(b'VXFZ')
        for name, data in files:
            out.write(bytes([len(name)]) + name.encode() + struct.pack('<I', len(data)) + data)


def main():
    seeds, base = sys.argv[1], sys.argv[2]
    cap = 2 << 11  # 2 MiB, as the base
    kinds = {0: ('data', b'\x5a' * GRAIN), 1: ('zero',), 2: ('unmapped',),
             3: ('data', b'\x11' * 100), 300: ('data', b'\x77' * GRAIN), 511: ('zero',)}
    frame(os.path.join(seeds, 'framed-seSparse'),
          [('s.vmdk', descriptor('s', cap)), ('s-sesparse.vmdk', extent(cap, kinds))])
    frame(os.path.join(seeds, 'framed-seSparse-dirty'),
          [('s.vmdk', descriptor('s', cap)), ('s-sesparse.vmdk', extent(cap, kinds, True))])
    base_bytes = open(base, 'rb').read()
    cid = int(re.search(rb'\nCID=([0-9a-f]+)', base_bytes[:65536]).group(1), 16)
    frame(os.path.join(seeds, 'framed-seSparse-child'),
          [('c.vmdk', descriptor('c', cap, os.path.basename(base), cid)),
           ('c-sesparse.vmdk', extent(cap, kinds)),
           (os.path.basename(base), base_bytes)])


if __name__ == '__main__':
    main()
