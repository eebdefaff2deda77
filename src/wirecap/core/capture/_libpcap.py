"""SHELL: the cffi ABI-mode binding to the system libpcap (and the bits of libc it needs).

ABI mode needs no compiler and no libpcap headers at install time: the declarations
below are libpcap 1.10's public API as documented in pcap(3PCAP), trimmed to what the
capture engine calls. Loading happens once per process, on first use.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
from dataclasses import dataclass
from typing import Any

from wirecap.errors import LibpcapMissingError

__all__ = [
    "PCAP_ERRBUF_SIZE",
    "PCAP_ERROR",
    "PCAP_ERROR_NO_SUCH_DEVICE",
    "PCAP_ERROR_PERM_DENIED",
    "PCAP_ERROR_PROMISC_PERM_DENIED",
    "PCAP_ERROR_TSTAMP_PRECISION_NOTSUP",
    "PCAP_TSTAMP_PRECISION_MICRO",
    "PCAP_TSTAMP_PRECISION_NANO",
    "Libpcap",
    "load",
]

# pcap/pcap.h (libpcap 1.10).
PCAP_ERRBUF_SIZE = 256
PCAP_ERROR = -1
PCAP_ERROR_NO_SUCH_DEVICE = -5
PCAP_ERROR_PERM_DENIED = -8
PCAP_ERROR_PROMISC_PERM_DENIED = -11
PCAP_ERROR_TSTAMP_PRECISION_NOTSUP = -12
PCAP_TSTAMP_PRECISION_MICRO = 0
PCAP_TSTAMP_PRECISION_NANO = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
PCAP_CHAR_ENC_UTF_8 = 1

_CDEF = """
typedef struct pcap pcap_t;
typedef struct pcap_dumper pcap_dumper_t;
typedef unsigned int bpf_u_int32;
typedef unsigned char u_char;
typedef struct _IO_FILE FILE;

struct timeval { long tv_sec; long tv_usec; };
struct pcap_pkthdr { struct timeval ts; bpf_u_int32 caplen; bpf_u_int32 len; };
struct pcap_stat { unsigned int ps_recv; unsigned int ps_drop; unsigned int ps_ifdrop; };
struct bpf_program { unsigned int bf_len; void *bf_insns; };
struct sockaddr { unsigned short sa_family; char sa_data[14]; };
struct pcap_addr {
    struct pcap_addr *next;
    struct sockaddr *addr;
    struct sockaddr *netmask;
    struct sockaddr *broadaddr;
    struct sockaddr *dstaddr;
};
struct pcap_if {
    struct pcap_if *next;
    char *name;
    char *description;
    struct pcap_addr *addresses;
    bpf_u_int32 flags;
};
typedef struct pcap_if pcap_if_t;
typedef void (*pcap_handler)(u_char *, const struct pcap_pkthdr *, const u_char *);

int pcap_init(unsigned int opts, char *errbuf);
const char *pcap_lib_version(void);
pcap_t *pcap_create(const char *source, char *errbuf);
pcap_t *pcap_open_dead_with_tstamp_precision(int linktype, int snaplen, unsigned int precision);
int pcap_set_snaplen(pcap_t *p, int snaplen);
int pcap_set_promisc(pcap_t *p, int promisc);
int pcap_set_timeout(pcap_t *p, int to_ms);
int pcap_set_immediate_mode(pcap_t *p, int immediate);
int pcap_set_buffer_size(pcap_t *p, int buffer_size);
int pcap_set_tstamp_precision(pcap_t *p, int tstamp_precision);
int pcap_get_tstamp_precision(pcap_t *p);
int pcap_activate(pcap_t *p);
char *pcap_geterr(pcap_t *p);
const char *pcap_statustostr(int error);
int pcap_compile(pcap_t *p, struct bpf_program *fp, const char *str, int optimize,
                 bpf_u_int32 netmask);
int pcap_setfilter(pcap_t *p, struct bpf_program *fp);
void pcap_freecode(struct bpf_program *fp);
int pcap_setnonblock(pcap_t *p, int nonblock, char *errbuf);
int pcap_get_selectable_fd(pcap_t *p);
int pcap_dispatch(pcap_t *p, int cnt, pcap_handler callback, u_char *user);
void pcap_breakloop(pcap_t *p);
int pcap_stats(pcap_t *p, struct pcap_stat *ps);
int pcap_datalink(pcap_t *p);
int pcap_set_datalink(pcap_t *p, int dlt);
int pcap_snapshot(pcap_t *p);
void pcap_close(pcap_t *p);
int pcap_findalldevs(pcap_if_t **alldevsp, char *errbuf);
void pcap_freealldevs(pcap_if_t *alldevs);

pcap_dumper_t *pcap_dump_fopen(pcap_t *p, FILE *fp);
void pcap_dump(u_char *user, const struct pcap_pkthdr *h, const u_char *sp);
int pcap_dump_flush(pcap_dumper_t *p);
long long pcap_dump_ftell64(pcap_dumper_t *p);
FILE *pcap_dump_file(pcap_dumper_t *p);
void pcap_dump_close(pcap_dumper_t *p);

FILE *fdopen(int fd, const char *mode);
FILE *open_memstream(char **ptr, size_t *sizeloc);
int fflush(FILE *stream);
int fclose(FILE *stream);
int ferror(FILE *stream);
void clearerr(FILE *stream);
int fseek(FILE *stream, long offset, int whence);
void free(void *ptr);
int *__errno_location(void);
"""


@dataclass(frozen=True)
class Libpcap:
    """The loaded libraries: ``ffi`` for types, ``pcap`` and ``libc`` for calls."""

    ffi: Any
    pcap: Any
    libc: Any
    version: str


def _find(name: str, fallback: str) -> str:
    return ctypes.util.find_library(name) or fallback


@functools.cache
def load() -> Libpcap:
    """Load libpcap once; raise LibpcapMissingError with the reason if it is absent."""
    try:
        import cffi
    except ImportError as exc:  # pragma: no cover - cffi is a hard dependency
        raise LibpcapMissingError(f"cffi is not installed: {exc}") from exc
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    # Debian's libpcap0.8 ships only the versioned soname; libpcap.so comes with -dev.
    candidates = ["libpcap.so.0.8", "libpcap.so.1", _find("pcap", "libpcap.so")]
    last_error: Exception | None = None
    for candidate in candidates:
        try:
            pcap = ffi.dlopen(candidate)
            break
        except OSError as exc:
            last_error = exc
    else:
        raise LibpcapMissingError(
            f"libpcap could not be loaded ({last_error}); install it: apt-get install libpcap0.8"
        )
    libc = ffi.dlopen(None)
    errbuf = ffi.new("char[]", PCAP_ERRBUF_SIZE)
    # pcap_init (1.10+) makes error strings UTF-8; older libraries lack it, which is harmless.
    with contextlib.suppress(AttributeError):
        pcap.pcap_init(PCAP_CHAR_ENC_UTF_8, errbuf)
    version = ffi.string(pcap.pcap_lib_version()).decode("utf-8", "replace")
    return Libpcap(ffi=ffi, pcap=pcap, libc=libc, version=version)
