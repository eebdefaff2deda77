"""Build script of `wirecap.core.formats._native`: two C loops the record merge runs per record.

Run by setuptools at install (`cffi_modules` in setup.py). Everything else of
the merge (ordering, EPB heads, errors) stays in Python and numpy; C does only
what costs Python ~0.2-0.5 µs per record and C a few nanoseconds:

- `wc_scan_pcap`: follow a pcap file's record lengths (draft-ietf-opsawg-pcap
  §5: a 16-byte header whose third 32-bit field is the captured length).
- `wc_gather`: concatenate byte ranges of several buffers into one output.

When the module was not built, record_merge.py does both in Python: same
results (the tests run both), slower.
"""

from __future__ import annotations

from cffi import FFI

CDEF = """
int64_t wc_scan_pcap(const uint8_t *buf, int64_t size, int64_t pos, int big_endian,
                     int64_t limit, int64_t max_caplen, int64_t *offsets, int64_t *next);
void wc_gather(uint8_t *out, const uint8_t *const *buffers, const int64_t *buffer_index,
               const int64_t *start, const int64_t *length, int64_t count);
"""

SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* Record starts from `pos`: stops after `limit` records, at the first record
 * whose header does not fit, whose captured length exceeds `max_caplen`, or
 * whose data runs past `size`. `*next` is where it stopped; the caller tells
 * the reason from the bytes there. Returns the number of offsets written. */
int64_t wc_scan_pcap(const uint8_t *buf, int64_t size, int64_t pos, int big_endian,
                     int64_t limit, int64_t max_caplen, int64_t *offsets, int64_t *next)
{
    int64_t count = 0;
    while (count < limit && pos + 16 <= size) {
        const uint8_t *p = buf + pos + 8;
        uint32_t caplen = big_endian
            ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]
            : ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
        if ((int64_t)caplen > max_caplen || pos + 16 + (int64_t)caplen > size)
            break;
        offsets[count++] = pos;
        pos += 16 + (int64_t)caplen;
    }
    *next = pos;
    return count;
}

/* out = buffers[buffer_index[0]][start[0]:+length[0]] + ... for `count` ranges.
 * The caller sized `out` to the sum of the lengths and checked every range. */
void wc_gather(uint8_t *out, const uint8_t *const *buffers, const int64_t *buffer_index,
               const int64_t *start, const int64_t *length, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        memcpy(out, buffers[buffer_index[i]] + start[i], (size_t)length[i]);
        out += length[i];
    }
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "wirecap.core.formats._native", SOURCE, extra_compile_args=["-O2", "-std=c99"]
)

if __name__ == "__main__":  # pragma: no cover - `python _native_build.py` builds in place
    ffibuilder.compile(verbose=True)
