"""Time-sequence (Stevens) graphs of analysed connections, as PNG.

One figure per connection. The title names the connection (client → server) and its
verdict, coloured by severity; under it come the verdict's detail and any secondary
findings (the words are the model's, as in ``render``). The graph plots relative
sequence number (bytes) against time since the connection's first packet, one panel per
direction on a shared time axis; the direction that carried more data gets the large
panel. Each panel shows:

- data segments as vertical bars from seq to seq + length, with a tick at the top;
  retransmissions in red, spurious ones (the original arrived: already acknowledged, or
  reported by a D-SACK) in brown, re-sends after an ICMP too-big in orange, all circled;
  out-of-order segments (a gap filled soon after: reordering) in cyan;
- the peer's ACK line (cumulative ACK, a step line) with its duplicate ACKs marked, and
  the receive-window edge (ACK + window; only when both SYNs were seen, as windows are
  scaled only then);
- SACK blocks the peer reported (D-SACK blocks, bytes received twice, in their own
  colour), zero-window probes, SYN/FIN/RST with packet numbers;
- zero-window periods shaded, ICMP/ICMPv6 errors as dashed vertical lines labelled with
  what they say ("ICMP frag needed, MTU 1280 ×10 from 10.201.1.1"), and a star on the
  segment each error quotes.

When most data segments fall in a small part of the time axis (a burst between long
stalls), an inset zooms in on that burst, in a corner the graph leaves empty. A sidebar
holds the legend, key facts per direction (bytes, segments, retransmissions, MSS, RTT,
window) and the findings' evidence; it lists a mark only when the graph shows at least
one inside the axes' limits. A connection without data in either direction
(refused, no answer, ICMP unreachable) gets an event timeline instead: one lane per
endpoint and per ICMP reporter, every packet marked and labelled, and the verdict's
explanation underneath.

This is the one module of the analysis layer that writes files: `plot_connection`
(atomically: temporary file, then rename). `render_png` returns the PNG bytes, for mail
attachments, and `build_figure` the figure itself. Figures are made with
``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot: nothing is
registered globally, nothing leaks, and plotting from several threads is safe.

Speed: segments are drawn as a few vectorised collections, never one artist each. When
a connection has more than `MAX_SEGMENTS` segments, its series are downsampled to
`DOWNSAMPLE_BINS` time bins (about two per horizontal pixel): each bin keeps the lowest
and highest sequence number its segments covered and the highest ACK, so what the eye
sees at that resolution is unchanged; the time axis label says so.
"""

from __future__ import annotations

import io
import os
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator

from wirecap.analysis.model import (
    Connection,
    Finding,
    IcmpError,
    IcmpKind,
    Report,
    Side,
    Vantage,
    Verdict,
)
from wirecap.analysis.units import format_bytes, format_ms, format_time

__all__ = ["DOWNSAMPLE_BINS", "MAX_SEGMENTS", "build_figure", "plot_connection", "render_png"]

#: Above this many segments in a connection, series are downsampled to time bins.
MAX_SEGMENTS: Final = 50_000
#: Time bins when downsampling: about two per pixel of the plot's width.
DOWNSAMPLE_BINS: Final = 2000

_Ints = npt.NDArray[np.int64]
_Floats = npt.NDArray[np.float64]
_Bools = npt.NDArray[np.bool_]

# TimeSequence columns (see model.TimeSequence) and TCP flag bits (RFC 9293 §3.1).
_PACKET, _TIME, _SIDE, _SEQ, _LEN, _ACK, _WIN, _FLAGS = range(8)
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK_FLAG: Final = 0x10

#: The size the layout is designed at; other sizes scale the resolution (dpi) with it.
_BASE_WIDTH: Final = 1400
_BASE_HEIGHT: Final = 800
_BASE_DPI: Final = 100.0
#: Per-segment ticks on top of the data bars up to this many data segments.
_TICKS_MAX: Final = 1500
#: Text labels per kind of event (SYN, FIN, ...) per panel; the rest get markers only.
_LABELS_MAX: Final = 6
#: Events labelled on a timeline.
_TIMELINE_LABELS_MAX: Final = 40
#: Markers drawn one by one on a timeline (only connections without data get one).
_TIMELINE_MARKERS_MAX: Final = 2000
#: Evidence items listed per finding.
_EVIDENCE_MAX: Final = 5
#: ICMP errors closer than this share of the time axis, with the same text, share a label.
_ICMP_GROUP_SHARE: Final = 0.03
#: The zoomed inset: the shortest time window holding `share` of the data segments, if
#: it is at most `span` of the time axis (tried in order), widened to its whole burst.
_ZOOM_TRIES: Final = ((0.9, 0.15), (0.4, 0.05))
_ZOOM_MIN_SEGMENTS: Final = 20
#: A window edge further above the data than this share of its range is left off scale.
_WINDOW_HEADROOM: Final = 0.5

_FONT: Final = "DejaVu Sans"
_MONO: Final = "DejaVu Sans Mono"

# Colours, in tcptrace's tradition: data dark, ACKs green, window yellow, resends red.
_DATA: Final = "#1f3a93"
_RESEND: Final = "#d62728"
_PMTUD_RESEND: Final = "#ff7f0e"
_ACK_COLOR: Final = "#2ca02c"
_WINDOW: Final = "#c9b400"
_SACK: Final = "#9467bd"
_DSACK: Final = "#e377c2"
_SPURIOUS: Final = "#8c564b"
_OUT_OF_ORDER: Final = "#17becf"
_DUP_ACK: Final = "#1b5e20"
_ICMP: Final = "#c2185b"
_ZERO_WINDOW: Final = "#f4b400"
_ZERO_WINDOW_TEXT: Final = "#8a6d00"
_SYN_COLOR: Final = "#00796b"
_FIN_COLOR: Final = "#5e35b1"
_RST_COLOR: Final = "#b71c1c"
_PLAIN: Final = "#546e7a"
_PROBE: Final = "#000000"
_TEXT: Final = "#222222"
_MUTED: Final = "#555555"
_GRID: Final = "#e3e3e3"
_GOOD: Final = "#2e7d32"
_BAD: Final = "#c62828"
_NEUTRAL: Final = "#616161"

_GOOD_VERDICTS: Final = frozenset({Verdict.COMPLETED_NORMALLY, Verdict.PMTUD_WORKING})
_NEUTRAL_VERDICTS: Final = frozenset({Verdict.TRUNCATED, Verdict.UNKNOWN})


# --- public API ---------------------------------------------------------------------------


def build_figure(
    report: Report, connection: Connection, *, width_px: int = 1400, height_px: int = 800
) -> Figure:
    """The time-sequence graph of `connection` (one of `report`'s), on an Agg canvas.

    The layout is designed at 1400×800; other sizes scale it (text included).

    Raises:
        ValueError: a size below 400×250 pixels.
    """
    if width_px < 400 or height_px < 250:
        raise ValueError(f"plot size {width_px}×{height_px} px is too small (min 400×250)")
    dpi = _BASE_DPI * min(width_px / _BASE_WIDTH, height_px / _BASE_HEIGHT)
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    _Plot(fig, report, connection).draw()
    return fig


def render_png(
    report: Report, connection: Connection, *, width_px: int = 1400, height_px: int = 800
) -> bytes:
    """The graph of `connection` as PNG bytes (for mail attachments)."""
    fig = build_figure(report, connection, width_px=width_px, height_px=height_px)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, facecolor="white")
    return buffer.getvalue()


def plot_connection(
    report: Report,
    connection: Connection,
    path: str | os.PathLike[str],
    *,
    width_px: int = 1400,
    height_px: int = 800,
) -> Path:
    """Write the graph of `connection` to `path` as PNG; returns `path` as a Path.

    The file appears whole or not at all: the PNG goes to a temporary file in the same
    directory, which then replaces `path`. Its mode is 0666 less the umask.

    Raises:
        OSError: the directory is missing or not writable.
    """
    data = render_png(report, connection, width_px=width_px, height_px=height_px)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


# --- small helpers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TimeAxis:
    """Capture-relative nanoseconds to the plot's x: `unit`s since `origin_ns`."""

    origin_ns: int
    unit: str
    ns_per_unit: float

    @classmethod
    def for_span(cls, origin_ns: int, span_ns: int) -> _TimeAxis:
        if span_ns >= 2_000_000_000:
            return cls(origin_ns, "s", 1e9)
        if span_ns >= 2_000_000:
            return cls(origin_ns, "ms", 1e6)
        return cls(origin_ns, "µs", 1e3)

    def many(self, ns: _Ints) -> _Floats:
        return (ns.astype(np.float64) - self.origin_ns) / self.ns_per_unit

    def one(self, ns: int) -> float:
        return (ns - self.origin_ns) / self.ns_per_unit

    def text(self, ns: int) -> str:
        """A time on this axis, for labels: "+215.954 ms"."""
        digits = 6 if self.unit == "s" else 3
        return f"+{self.one(ns):,.{digits}f} {self.unit}"


def _byte_unit(top: float) -> tuple[str, float]:
    if top >= 10_000_000:
        return "MB", 1e6
    if top >= 10_000:
        return "kB", 1e3
    return "bytes", 1.0


def _wrap(text: str, chars: int, max_lines: int, indent: str = "") -> list[str]:
    lines = textwrap.wrap(text, max(20, chars), subsequent_indent=indent, break_on_hyphens=False)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, len(lines[-1]) - 1)].rstrip() + "…"
    return lines


def _vantage(finding: Finding) -> str:
    return "" if finding.vantage is Vantage.EITHER else f" [{finding.vantage} view]"


def _verdict_color(verdict: Verdict) -> str:
    if verdict in _GOOD_VERDICTS:
        return _GOOD
    if verdict in _NEUTRAL_VERDICTS:
        return _NEUTRAL
    return _BAD


def _icmp_label(error: IcmpError) -> str:
    """A short label: "ICMP frag needed, MTU 1280", "ICMP port unreachable"."""
    if error.kind is IcmpKind.FRAGMENTATION_NEEDED:
        text = "ICMP frag needed"
    elif error.kind is IcmpKind.PACKET_TOO_BIG:
        text = "ICMPv6 packet too big"
    else:
        text = f"{'ICMPv6' if error.version == 6 else 'ICMP'} {error.description}"
    return text + (f", MTU {error.mtu}" if error.mtu is not None else "")


def _flag_name(flags: int) -> str:
    if flags & _RST:
        return "RST"
    if flags & _SYN:
        return "SYN-ACK" if flags & _ACK_FLAG else "SYN"
    if flags & _FIN:
        return "FIN"
    return "ACK" if flags & _ACK_FLAG else "segment"


def _flag_style(flags: int) -> tuple[str, str, float]:
    """Colour, marker and size of a segment's marker, by its most telling flag."""
    if flags & _RST:
        return _RST_COLOR, "X", 11
    if flags & _SYN:
        return _SYN_COLOR, "^", 10
    if flags & _FIN:
        return _FIN_COLOR, "s", 8
    return _PLAIN, "o", 6


def _bins(t: _Floats, span: tuple[float, float]) -> _Ints:
    """Start index of each run of `t` (ascending) in one of `DOWNSAMPLE_BINS` time bins."""
    width = (span[1] - span[0]) or 1.0
    index = np.clip(
        ((t - span[0]) / width * DOWNSAMPLE_BINS).astype(np.int64), 0, DOWNSAMPLE_BINS - 1
    )
    return np.flatnonzero(np.concatenate(([True], index[1:] != index[:-1])))


def _bars(t: _Floats, lo: _Ints, hi: _Ints, span: tuple[float, float], thin: bool) -> _Floats:
    """Vertical segments (N, 2, 2) from (t, lo) to (t, hi); one per time bin when `thin`."""
    if thin and len(t) > DOWNSAMPLE_BINS:
        starts = _bins(t, span)
        t = t[starts]
        lo = np.minimum.reduceat(lo, starts)
        hi = np.maximum.reduceat(hi, starts)
    segments = np.empty((len(t), 2, 2))
    segments[:, 0, 0] = t
    segments[:, 1, 0] = t
    segments[:, 0, 1] = lo
    segments[:, 1, 1] = hi
    return segments


def _steps(t: _Floats, y: _Ints, span: tuple[float, float], thin: bool) -> tuple[_Floats, _Ints]:
    """Points of a step line (drawn steps-post), continued to the end of the time axis;
    one point per time bin, its highest value, when `thin`."""
    if thin and len(t) > DOWNSAMPLE_BINS:
        starts = _bins(t, span)
        t = t[starts]
        y = np.maximum.reduceat(y, starts)
    if len(t):
        t = np.append(t, max(span[1], float(t[-1])))
        y = np.append(y, y[-1])
    return t, y


def _reached(rows: _Ints) -> _Ints:
    """Per row, the highest sequence number its sender had reached before it (SYN and FIN
    take one); the first row's own sequence number for the first."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    ends = rows[:, _SEQ] + rows[:, _LEN] + ((rows[:, _FLAGS] & (_SYN | _FIN)) != 0)
    return np.concatenate((rows[:1, _SEQ], np.maximum.accumulate(ends)[:-1]))


def _every(count: int, limit: int) -> slice:
    """Every k-th item, so that at most about `limit` of `count` are drawn."""
    return slice(None, None, max(1, -(-count // limit)))


def _line(color: str, **kw: Any) -> Line2D:
    return Line2D([], [], color=color, **kw)


def _marker(color: str, marker: str, size: float, **kw: Any) -> Line2D:
    return Line2D([], [], color=color, marker=marker, linestyle="", markersize=size, **kw)


def _extent(xs: _Floats, lo: npt.ArrayLike, hi: npt.ArrayLike | None = None) -> _Extent:
    """Vertical bars (or points, without `hi`) at `xs`, as rectangles in data units."""
    low = np.asarray(lo, dtype=np.float64)
    high = low if hi is None else np.asarray(hi, dtype=np.float64)
    return _Extent(xs, xs, low, high)


def _step_extent(xs: _Floats, ys: _Ints) -> _Extent:
    """A steps-post line: its risers at each x and its runs to the next x."""
    y = ys.astype(np.float64)
    previous = np.concatenate((y[:1], y[:-1]))
    run_end = np.concatenate((xs[1:], xs[-1:]))
    return _Extent(
        np.concatenate((xs, xs)),
        np.concatenate((xs, run_end)),
        np.concatenate((np.minimum(previous, y), y)),
        np.concatenate((np.maximum(previous, y), y)),
    )


@dataclass(frozen=True, slots=True)
class _Extent:
    """What one kind of mark covers on one axes: rectangles x0..x1 × y0..y1 (data units)."""

    x0: _Floats
    x1: _Floats
    y0: _Floats
    y1: _Floats

    def inside(self, ax: Axes) -> bool:
        """Whether any of it lies within the axes' current limits."""
        left, right = sorted(ax.get_xlim())
        bottom, top = sorted(ax.get_ylim())
        return bool(
            np.any((self.x1 >= left) & (self.x0 <= right) & (self.y1 >= bottom) & (self.y0 <= top))
        )


@dataclass(frozen=True, slots=True)
class _Label:
    x: float
    y: float
    text: str
    color: str


@dataclass(slots=True)
class _Panel:
    """One direction: what its sender sent and what the peer sent back."""

    sender: Side
    rows: _Ints
    peer_rows: _Ints
    #: Per row, the highest sequence number the sender had reached before it.
    reached: _Ints
    #: Labels to place once the axes' limits are known.
    labels: list[_Label] = field(default_factory=list)
    #: Points drawn (x, y data coordinates), to find an empty corner for the inset.
    xs: list[_Floats] = field(default_factory=list)
    ys: list[_Floats] = field(default_factory=list)


# --- the figure ---------------------------------------------------------------------------


class _Plot:
    """Lays out and draws one connection's figure."""

    def __init__(self, fig: Figure, report: Report, connection: Connection) -> None:
        self.fig = fig
        self.report = report
        self.c = connection
        rows: _Ints = np.frombuffer(connection.series.data, dtype=np.int64).reshape(-1, 8)
        if len(rows) > 1 and np.any(np.diff(rows[:, _TIME]) < 0):
            rows = rows[np.argsort(rows[:, _TIME], kind="stable")]
        self.rows = rows
        self.thin = len(rows) > MAX_SEGMENTS
        c = connection
        self.x = _TimeAxis.for_span(c.first.time_ns, c.duration_ns)
        end = max(self.x.one(c.last.time_ns), 0.0)
        pad = (end or 1.0) * 0.025
        self.span = (0.0, end)
        self.xlim = (-pad, end + pad)
        self.legend: dict[str, Artist] = {}
        #: Legend entries known to be visible, and where the others were drawn.
        self.shown: set[str] = set()
        self.drawn: dict[str, list[tuple[Axes, _Extent]]] = {}
        width_in, height_in = fig.get_size_inches()
        self.width_pt = float(width_in) * 72
        self.height_pt = float(height_in) * 72
        self.px_per_pt = fig.dpi / 72
        # Windows are scaled, so meaningful as sizes, only when both SYNs were seen.
        hs = c.handshake
        self.windows_known = hs.syn is not None and hs.syn_ack is not None
        # Text is measured while laying out (title, legend, labels near the edges).
        self.renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]

    # Figure fractions from points (1/72 inch), so the layout holds at any size.
    def fx(self, pt: float) -> float:
        return pt / self.width_pt

    def fy(self, pt: float) -> float:
        return pt / self.height_pt

    def chars(self, width_fraction: float, font_pt: float, *, mono: bool = False) -> int:
        """About how many characters at `font_pt` fit in `width_fraction` of the width."""
        return int(width_fraction * self.width_pt / (font_pt * (0.66 if mono else 0.56)))

    def text(self, x: float, y: float, s: str, **kw: Any) -> Text:
        kw.setdefault("fontfamily", _FONT)
        kw.setdefault("color", _TEXT)
        return self.fig.text(x, y, s, parse_math=False, **kw)

    def measure(self, s: str, font_pt: float) -> float:
        """The width of `s` at `font_pt`, as a fraction of the figure's."""
        probe = self.text(0, 0, s, fontsize=font_pt)
        width = float(probe.get_window_extent(self.renderer).width)
        probe.remove()
        return width / self.fig.bbox.width

    def below(self, artist: Artist, gap_pt: float) -> float:
        """The figure y `gap_pt` below `artist`."""
        box = artist.get_window_extent(self.renderer)
        return float(box.y0) / self.fig.bbox.height - self.fy(gap_pt)

    def add_legend(
        self, label: str, handle: Artist, ax: Axes | None = None, where: _Extent | None = None
    ) -> None:
        """A legend entry for a mark drawn `where` on `ax`: listed once the limits are set
        if any of it is inside them; without `ax`, the mark is always in view."""
        self.legend.setdefault(label, handle)
        if ax is None or where is None:
            self.shown.add(label)
        else:
            self.drawn.setdefault(label, []).append((ax, where))

    def visible_legend(self) -> dict[str, Artist]:
        """The legend entries whose marks the finished graph shows."""
        return {
            label: handle
            for label, handle in self.legend.items()
            if label in self.shown
            or any(where.inside(ax) for ax, where in self.drawn.get(label, ()))
        }

    # --- layout ------------------------------------------------------------------------

    def draw(self) -> None:
        top = self.header()
        left, right = self.fx(64), 0.728
        bottom = self.fy(50)
        c = self.c
        if c.client_data.payload_bytes or c.server_data.payload_bytes:
            last = self.stevens(left, right, bottom, top - self.fy(18))
        else:
            last = self.timeline(left, right, bottom, top - self.fy(24))
        last.set_xlabel(self.xlabel(), fontsize=10, fontfamily=_FONT, color=_TEXT)
        self.sidebar(right + self.fx(26), top)

    def header(self) -> float:
        """Title, verdict detail and secondary findings; returns the figure y below them."""
        c = self.c
        x = self.fx(14)
        y = 1 - self.fy(10)
        prefix = self.text(
            x,
            y,
            f"Connection {c.index}: {c.client} → {c.server} — ",
            fontsize=15,
            fontweight="bold",
            va="top",
        )
        after = float(prefix.get_window_extent(self.renderer).x1) / self.fig.bbox.width
        verdict = c.verdict
        label = self.text(
            after,
            y,
            verdict.label + _vantage(verdict),
            fontsize=15,
            fontweight="bold",
            va="top",
            color=_verdict_color(verdict.verdict),
        )
        if label.get_window_extent(self.renderer).x1 > self.fig.bbox.width * 0.99:
            # Long addresses: the verdict gets a line of its own.
            y -= self.fy(21)
            label.set_position((x, y))
        y -= self.fy(25)
        for line in _wrap(verdict.detail, self.chars(0.97, 11), 3):
            self.text(x, y, line, fontsize=11, va="top")
            y -= self.fy(15)
        for finding in c.also:
            text = f"also: {finding.label}{_vantage(finding)} — {finding.detail}"
            for line in _wrap(text, self.chars(0.97, 10), 2):
                self.text(x, y, line, fontsize=10, va="top", color=_verdict_color(finding.verdict))
                y -= self.fy(14)
        return y

    def xlabel(self) -> str:
        c = self.c
        text = (
            f"time ({self.x.unit}) since the connection's first packet, #{c.first.packet} "
            f"at {format_time(c.first.time_ns)} in the capture"
        )
        if self.report.start_epoch_ns is not None:
            start = datetime.fromtimestamp(
                (self.report.start_epoch_ns + c.first.time_ns) / 1e9, tz=UTC
            )
            text += f" ({start:%Y-%m-%d %H:%M:%S} UTC)"
        if self.thin:
            text += f"\n{len(self.rows):,} segments, drawn as {DOWNSAMPLE_BINS:,} time bins"
        return text

    def style(self, ax: Axes) -> None:
        ax.grid(True, color=_GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=9, colors=_TEXT)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)

    # --- Stevens graph -----------------------------------------------------------------

    def stevens(self, left: float, right: float, bottom: float, top: float) -> Axes:
        c = self.c
        sides = self.rows[:, _SIDE]
        client_rows, server_rows = self.rows[sides == 0], self.rows[sides == 1]
        major = (
            Side.CLIENT if c.client_data.unique_bytes >= c.server_data.unique_bytes else Side.SERVER
        )
        panels = {
            Side.CLIENT: _Panel(Side.CLIENT, client_rows, server_rows, _reached(client_rows)),
            Side.SERVER: _Panel(Side.SERVER, server_rows, client_rows, _reached(server_rows)),
        }
        major_bytes = c.direction(major).unique_bytes
        minor_bytes = c.direction(major.peer).unique_bytes
        share = 0.5 if minor_bytes * 4 >= major_bytes else 0.74
        gap = self.fy(36)
        height = top - bottom - gap
        major_height = height * share
        ax_major = self.fig.add_axes((left, top - major_height, right - left, major_height))
        ax_minor = self.fig.add_axes(
            (left, bottom, right - left, height - major_height), sharex=ax_major
        )
        self.direction(ax_major, panels[major], main=True, large=True)
        self.direction(ax_minor, panels[major.peer], main=True, large=share == 0.5)
        ax_major.tick_params(labelbottom=False)
        self.zoom(ax_major, panels[major])
        return ax_minor

    def direction(
        self,
        ax: Axes,
        panel: _Panel,
        *,
        main: bool,
        large: bool = True,
        span: tuple[float, float] | None = None,
    ) -> None:
        """Draw one direction on `ax`; `main` False for the zoomed inset (no labels), whose
        `span` (x units) sets the time bins when downsampling."""
        span = span or self.span
        c = self.c
        sender = panel.sender
        mine, theirs = c.direction(sender), c.direction(sender.peer)
        rows, peer = panel.rows, panel.peer_rows
        self.style(ax)
        if main:
            again = (
                f", {mine.retransmission_count:,} retransmitted"
                if mine.retransmission_count
                else ""
            )
            ax.set_title(
                f"{sender} → {sender.peer} data: {format_bytes(mine.unique_bytes)}{again}",
                loc="left",
                fontsize=10.5,
                fontfamily=_FONT,
                color=_TEXT,
                fontweight="bold",
            )
        t = self.x.many(rows[:, _TIME])
        seq, length, flags, packets = (
            rows[:, _SEQ],
            rows[:, _LEN],
            rows[:, _FLAGS],
            rows[:, _PACKET],
        )
        lows: list[float] = []
        highs: list[float] = []
        if len(rows):
            lows.append(float(np.min(seq)))
            highs.append(float(np.max(seq + length)))
        self.zero_windows(ax, label=main)

        # The peer's cumulative ACK and window edge, in this sender's numbering.
        acks = peer[peer[:, _ACK] >= 0]
        edge_xs: _Floats | None = None
        edge_ys: _Ints | None = None
        if len(acks):
            ta = self.x.many(acks[:, _TIME])
            xs, ys = _steps(ta, acks[:, _ACK], span, self.thin)
            ax.plot(
                xs, ys, drawstyle="steps-post", color=_ACK_COLOR, linewidth=1.6, zorder=3, gid="ack"
            )
            self.add_legend(
                "ACK line (peer's cumulative ACK)",
                _line(_ACK_COLOR, lw=1.6),
                ax,
                _step_extent(xs, ys),
            )
            panel.xs.append(xs)
            panel.ys.append(ys.astype(np.float64))
            lows.append(float(np.min(acks[:, _ACK])))
            highs.append(float(np.max(acks[:, _ACK])))
            if self.windows_known:
                edge_xs, edge_ys = _steps(ta, acks[:, _ACK] + acks[:, _WIN], span, self.thin)
                ax.plot(
                    edge_xs,
                    edge_ys,
                    drawstyle="steps-post",
                    color=_WINDOW,
                    linewidth=1.2,
                    zorder=2,
                    gid="window-edge",
                )
                self.add_legend(
                    "receive window edge (ACK + window)",
                    _line(_WINDOW, lw=1.2),
                    ax,
                    _step_extent(edge_xs, edge_ys),
                )
            # Duplicate ACKs (RFC 5681 §2) where they sit on the ACK line.
            duplicate = np.isin(acks[:, _PACKET], [r.packet for r in theirs.duplicate_acks])
            if np.any(duplicate):
                pick = _every(int(np.count_nonzero(duplicate)), MAX_SEGMENTS)
                dx = ta[duplicate][pick]
                dy = acks[duplicate][pick, _ACK]
                ax.plot(
                    dx,
                    dy,
                    linestyle="",
                    marker="v",
                    markersize=5,
                    markerfacecolor="none",
                    markeredgewidth=1.1,
                    color=_DUP_ACK,
                    zorder=7,
                    gid="duplicate-acks",
                )
                self.add_legend(
                    "duplicate ACK",
                    _marker(_DUP_ACK, "v", 5, markerfacecolor="none", mew=1.1),
                    ax,
                    _extent(dx, dy),
                )

        # SACK blocks the peer reported about this sender's data; a D-SACK report's first
        # block (bytes received twice, RFC 2883 §4) in its own colour. Drawn over the
        # data: on a short path the ACK follows the segment so closely that it would
        # hide them.
        if theirs.sack:
            reports = theirs.sack[_every(len(theirs.sack), MAX_SEGMENTS)]
            blocks = np.array(
                [
                    (self.x.one(r.time_ns), lo, hi, r.dsack and i == 0)
                    for r in reports
                    for i, (lo, hi) in enumerate(r.blocks)
                ],
                dtype=np.float64,
            ).reshape(-1, 4)
            for twice, color, label, gid in (
                (False, _SACK, "SACK block (reported by the peer)", "sack"),
                (True, _DSACK, "D-SACK block (received twice)", "dsack"),
            ):
                kind = blocks[(blocks[:, 3] != 0) == twice]
                if not len(kind):
                    continue
                segments = np.empty((len(kind), 2, 2))
                segments[:, :, 0] = kind[:, :1]
                segments[:, 0, 1] = kind[:, 1]
                segments[:, 1, 1] = kind[:, 2]
                ax.add_collection(
                    LineCollection(
                        list(segments), colors=color, linewidths=3, alpha=0.55, zorder=5.5, gid=gid
                    )
                )
                self.add_legend(
                    label,
                    _line(color, lw=3, alpha=0.55),
                    ax,
                    _extent(kind[:, 0], kind[:, 1], kind[:, 2]),
                )
            if len(blocks):
                highs.append(float(np.max(blocks[:, 2])))

        # Data: first transmissions, retransmissions, re-sends after an ICMP too-big.
        probes = self.probes(rows, sender)
        data = (length > 0) & ~probes
        lost_packets = [r.packet for r in mine.retransmissions if not r.pmtud and not r.spurious]
        spurious_packets = [r.packet for r in mine.retransmissions if r.spurious and not r.pmtud]
        pmtud_packets = [r.packet for r in mine.retransmissions if r.pmtud]
        resent = np.isin(packets, lost_packets) & data
        spurious = np.isin(packets, spurious_packets) & data & ~resent
        pmtud = np.isin(packets, pmtud_packets) & data & ~resent & ~spurious
        reordered = np.isin(packets, [r.packet for r in mine.out_of_order]) & data
        reordered &= ~resent & ~spurious & ~pmtud
        original = data & ~resent & ~spurious & ~pmtud & ~reordered
        if np.any(original):
            bars = _bars(
                t[original], seq[original], seq[original] + length[original], span, self.thin
            )
            ax.add_collection(
                LineCollection(list(bars), colors=_DATA, linewidths=1.8, zorder=5, gid="data")
            )
            if not self.thin and int(np.count_nonzero(original)) <= _TICKS_MAX:
                ax.plot(
                    t[original],
                    seq[original] + length[original],
                    linestyle="",
                    marker="_",
                    markersize=6,
                    markeredgewidth=1.4,
                    color=_DATA,
                    zorder=5,
                )
            self.add_legend(
                "data segment (seq to seq + length)",
                _line(_DATA, lw=1.8),
                ax,
                _extent(bars[:, 0, 0], bars[:, 0, 1], bars[:, 1, 1]),
            )
            panel.xs += [bars[:, 0, 0], bars[:, 1, 0]]
            panel.ys += [bars[:, 0, 1], bars[:, 1, 1]]
        if np.any(reordered):
            bars = _bars(
                t[reordered], seq[reordered], seq[reordered] + length[reordered], span, self.thin
            )
            ax.add_collection(
                LineCollection(
                    list(bars), colors=_OUT_OF_ORDER, linewidths=2.4, zorder=6, gid="out-of-order"
                )
            )
            tops = (seq[reordered] + length[reordered])[_every(len(bars), MAX_SEGMENTS)]
            ax.plot(
                t[reordered][_every(len(bars), MAX_SEGMENTS)],
                tops,
                linestyle="",
                marker="s",
                markersize=4,
                color=_OUT_OF_ORDER,
                zorder=6,
                gid="out-of-order",
            )
            self.add_legend(
                "out-of-order segment (reordering)",
                _line(_OUT_OF_ORDER, lw=2.4, marker="s", markersize=4),
                ax,
                _extent(bars[:, 0, 0], bars[:, 0, 1], bars[:, 1, 1]),
            )
            panel.xs += [bars[:, 0, 0], bars[:, 1, 0]]
            panel.ys += [bars[:, 0, 1], bars[:, 1, 1]]
        for mask, color, label, gid in (
            (pmtud, _PMTUD_RESEND, "re-sent smaller after ICMP too-big", "pmtud-resends"),
            (
                spurious,
                _SPURIOUS,
                "spurious retransmission (not lost)",
                "spurious-resends",
            ),
            (resent, _RESEND, "retransmission", "retransmissions"),
        ):
            if not np.any(mask):
                continue
            bars = _bars(t[mask], seq[mask], seq[mask] + length[mask], span, self.thin)
            ax.add_collection(
                LineCollection(list(bars), colors=color, linewidths=2.4, zorder=6, gid=gid)
            )
            count = int(np.count_nonzero(mask))
            pick = _every(count, MAX_SEGMENTS)
            ring = 7 if count <= 100 else 5 if count <= 1000 else 3
            middle = (seq[mask] + length[mask] / 2)[pick]
            ax.plot(
                t[mask][pick],
                middle,
                linestyle="",
                marker="o",
                markersize=ring,
                markerfacecolor="none",
                markeredgewidth=1.6,
                color=color,
                zorder=10,
                gid=gid,
            )
            self.add_legend(
                label,
                _line(
                    color,
                    lw=2.4,
                    marker="o",
                    markersize=7,
                    markerfacecolor="none",
                    markeredgewidth=1.6,
                ),
                ax,
                _extent(bars[:, 0, 0], bars[:, 0, 1], bars[:, 1, 1]),
            )
            panel.xs.append(t[mask][pick])
            panel.ys.append(middle.astype(np.float64))
        if np.any(probes):
            ax.plot(
                t[probes],
                seq[probes],
                linestyle="",
                marker="d",
                markersize=6,
                color=_PROBE,
                zorder=6,
                gid="probes",
            )
            self.add_legend(
                "zero-window probe", _marker(_PROBE, "d", 6), ax, _extent(t[probes], seq[probes])
            )
            panel.xs.append(t[probes])
            panel.ys.append(seq[probes].astype(np.float64))
        self.gaps(ax, panel, t)

        # SYN, FIN and RST where they sit in the sequence space (SYN and FIN take one).
        flagged = np.flatnonzero((flags & (_SYN | _FIN | _RST)) != 0)
        counts: dict[str, int] = {}
        for i in flagged[: 8 * _LABELS_MAX]:
            color, marker, size = _flag_style(int(flags[i]))
            x, y = float(t[i]), float(seq[i] + length[i])
            ax.plot(
                [x],
                [y],
                linestyle="",
                marker=marker,
                markersize=size,
                color=color,
                markeredgecolor="white",
                markeredgewidth=0.8,
                zorder=8,
                gid="flag",
            )
            name = _flag_name(int(flags[i]))
            self.add_legend("SYN" if name == "SYN-ACK" else name, _marker(color, marker, size - 1))
            counts[name] = counts.get(name, 0) + 1
            if counts[name] <= _LABELS_MAX:
                panel.labels.append(_Label(x, y, f"{name} #{packets[i]}", color))
            panel.xs.append(np.array([x]))
            panel.ys.append(np.array([y]))

        highs += self.icmp(ax, panel, main=main)
        if main and not mine.data_segments:
            ax.text(
                0.5,
                0.55,
                f"no data from the {sender} captured",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=10,
                color=_MUTED,
                fontstyle="italic",
                parse_math=False,
            )

        # Limits: the data and ACKs; the window edge too, unless far above them.
        lo = min(lows, default=0.0)
        hi = max(highs, default=1.0)
        if edge_ys is not None and edge_xs is not None and len(edge_ys):
            top_edge = float(np.max(edge_ys))
            if top_edge <= hi + (hi - lo) * _WINDOW_HEADROOM:
                hi = max(hi, top_edge)
                panel.xs.append(edge_xs)
                panel.ys.append(edge_ys.astype(np.float64))
            elif main:
                unit, scale = _byte_unit(top_edge)
                ax.text(
                    1.0,
                    1.0,
                    f"receive window edge off scale, up to {top_edge / scale:,.0f} {unit}",
                    transform=ax.transAxes,
                    ha="right",
                    va="bottom",
                    fontsize=8.5,
                    color="#8a7a00",
                    parse_math=False,
                )
        if hi - lo < 10:
            hi = lo + 10
        margin = (hi - lo) * 0.07
        unit, scale = _byte_unit(max(abs(lo), abs(hi)))
        ax.set_ylim(lo - margin, hi + margin)
        ax.set_xlim(*self.xlim)
        ax.yaxis.set_major_locator(
            MaxNLocator(nbins=7 if large else 4, integer=scale == 1.0, min_n_ticks=3)
        )
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / scale:,.6g}"))
        if main:
            what = "relative sequence number" if large else "relative seq"
            ax.set_ylabel(f"{what} ({unit})", fontsize=10, fontfamily=_FONT, color=_TEXT)
            self.place_labels(ax, panel.labels)

    def gaps(self, ax: Axes, panel: _Panel, t: _Floats) -> None:
        """Dotted lines where a segment starts beyond everything seen before it from its
        sender: bytes sent but not in the capture (lost before the capture point, or not
        captured), and a cross on bare segments that show it."""
        rows, before = panel.rows, panel.reached
        seq, length, flags = rows[:, _SEQ], rows[:, _LEN], rows[:, _FLAGS]
        gap = (seq > before) & ((flags & _SYN) == 0)
        if not np.any(gap):
            return
        index = np.flatnonzero(gap)
        index = index[_every(len(index), MAX_SEGMENTS)]
        segments = np.empty((len(index), 2, 2))
        segments[:, :, 0] = t[index, None]
        segments[:, 0, 1] = before[index]
        segments[:, 1, 1] = seq[index]
        ax.add_collection(
            LineCollection(
                list(segments),
                colors=_MUTED,
                linewidths=1.3,
                linestyles="dotted",
                zorder=4,
                gid="gaps",
            )
        )
        self.add_legend(
            "sequence gap: bytes sent, not captured",
            _line(_MUTED, lw=1.3, ls=":"),
            ax,
            _extent(segments[:, 0, 0], segments[:, 0, 1], segments[:, 1, 1]),
        )
        panel.xs += [segments[:, 0, 0], segments[:, 0, 0]]
        panel.ys += [segments[:, 0, 1], segments[:, 1, 1]]
        bare = index[length[index] == 0]
        if len(bare):
            ax.plot(
                t[bare],
                seq[bare],
                linestyle="",
                marker="x",
                markersize=8,
                markeredgewidth=2,
                color=_PROBE,
                zorder=8,
                gid="gap-segments",
            )
            self.add_legend(
                "bare segment past the gap",
                _marker(_PROBE, "x", 7, mew=2),
                ax,
                _extent(t[bare], seq[bare]),
            )
            for i in bare[:_LABELS_MAX]:
                skipped = format_bytes(int(seq[i] - before[i]))
                panel.labels.append(
                    _Label(
                        float(t[i]),
                        float(seq[i]),
                        f"#{rows[i, _PACKET]} at seq {seq[i]:,}: {skipped} never seen",
                        _PROBE,
                    )
                )

    def place_labels(self, ax: Axes, labels: list[_Label]) -> None:
        """Annotate markers, skipping one too close to a placed one, and turning labels
        near the right or top edge inwards."""
        box = ax.get_window_extent(self.renderer)
        placed: list[tuple[float, float]] = []
        for label in labels:
            px, py = ax.transData.transform((label.x, label.y))
            if any(
                abs(px - qx) < 55 * self.px_per_pt and abs(py - qy) < 14 * self.px_per_pt
                for qx, qy in placed
            ):
                continue
            placed.append((px, py))
            right = px > box.x1 - 70 * self.px_per_pt
            high = py > box.y1 - 18 * self.px_per_pt
            ax.annotate(
                label.text,
                (label.x, label.y),
                xytext=(-7 if right else 7, -6 if high else 6),
                textcoords="offset points",
                ha="right" if right else "left",
                va="top" if high else "bottom",
                fontsize=9,
                color=label.color,
                fontweight="bold",
                zorder=9,
                parse_math=False,
                annotation_clip=False,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )

    def probes(self, rows: _Ints, sender: Side) -> _Bools:
        """Segments of at most one byte `sender` sent while its peer's window was zero."""
        mask = np.zeros(len(rows), dtype=np.bool_)
        if not self.c.direction(sender).zero_window_probes:
            return mask
        small = (rows[:, _LEN] <= 1) & ((rows[:, _FLAGS] & (_SYN | _FIN | _RST)) == 0)
        for period in self.c.direction(sender.peer).zero_windows:
            end = period.start.time_ns + period.duration_ns
            mask |= small & (rows[:, _TIME] > period.start.time_ns) & (rows[:, _TIME] < end)
        return mask

    def zero_windows(self, ax: Axes, *, label: bool) -> None:
        for side in (Side.CLIENT, Side.SERVER):
            for period in self.c.direction(side).zero_windows:
                start = self.x.one(period.start.time_ns)
                end = self.x.one(period.start.time_ns + period.duration_ns)
                ax.axvspan(
                    start, end, color=_ZERO_WINDOW, alpha=0.18, zorder=0, lw=0, gid="zero-window"
                )
                self.add_legend(
                    f"zero window advertised by the {side}", Patch(color=_ZERO_WINDOW, alpha=0.3)
                )
                if label:
                    ax.text(
                        (start + end) / 2,
                        0.03,
                        f"{side} window 0 for {format_ms(period.duration_ns)}",
                        transform=ax.get_xaxis_transform(),
                        ha="center",
                        va="bottom",
                        fontsize=9,
                        color=_ZERO_WINDOW_TEXT,
                        parse_math=False,
                        zorder=9,
                    )

    def icmp(self, ax: Axes, panel: _Panel, *, main: bool) -> list[float]:
        """Dashed lines at the connection's ICMP errors; on the panel of the side they
        were sent to, a star at the quoted segment and grouped labels. Returns the
        quoted sequence numbers' top, for the limits."""
        errors = self.c.icmp_errors
        if not errors:
            return []
        times = [self.x.one(e.time_ns) for e in errors[_every(len(errors), 2000)]]
        ax.vlines(
            times,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors=_ICMP,
            linestyles="dashed",
            linewidths=1.1,
            alpha=0.7,
            zorder=1,
            gid="icmp",
        )
        self.add_legend("ICMP error tied to this connection", _line(_ICMP, lw=1.1, ls="--"))
        mine = [e for e in errors if e.about is panel.sender]
        quoted = [e for e in mine if e.quoted_seq is not None][:MAX_SEGMENTS]
        if quoted:
            xs = np.array([self.x.one(e.time_ns) for e in quoted])
            ys = np.array([float(e.quoted_seq or 0) for e in quoted])
            ax.plot(
                xs,
                ys,
                linestyle="",
                marker="*",
                markersize=12,
                color=_ICMP,
                markeredgecolor="white",
                markeredgewidth=0.5,
                zorder=7,
                gid="icmp-quoted",
            )
            self.add_legend(
                "segment the ICMP error quotes", _marker(_ICMP, "*", 12), ax, _extent(xs, ys)
            )
            panel.xs.append(xs)
            panel.ys.append(ys)
        if main and mine:
            groups: list[tuple[float, float, str, int, str]] = []
            near = (self.xlim[1] - self.xlim[0]) * _ICMP_GROUP_SHARE
            for error in mine:
                x = self.x.one(error.time_ns)
                text = _icmp_label(error)
                if groups and groups[-1][2] == text and x - groups[-1][1] <= near:
                    first, _last, _text, count, reporter = groups[-1]
                    groups[-1] = (first, x, text, count + 1, reporter)
                else:
                    groups.append((x, x, text, 1, error.reporter))
            middle = (self.xlim[0] + self.xlim[1]) / 2
            for i, (x, _last, text, count, reporter) in enumerate(groups[:_LABELS_MAX]):
                times_text = f" ×{count}" if count > 1 else ""
                ax.text(
                    x,
                    0.97 - 0.085 * i,
                    f"{text}{times_text} from {reporter}",
                    transform=ax.get_xaxis_transform(),
                    ha="left" if x < middle else "right",
                    va="top",
                    fontsize=9,
                    color=_ICMP,
                    fontweight="bold",
                    parse_math=False,
                    zorder=9,
                    bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": _ICMP, "alpha": 0.9},
                    gid="icmp-label",
                )
        tops = [float((e.quoted_seq or 0) + (e.quoted_length or 0)) for e in quoted]
        return [max(tops)] if tops else []

    def zoom(self, ax: Axes, panel: _Panel) -> None:
        """An inset of the data's dense part, when that is a small part of the time."""
        window = self.dense_window(panel)
        if window is None:
            return
        t0, t1 = window
        rect = self.empty_corner(ax, panel)
        if rect is None:
            return
        rows_t = self.x.many(panel.rows[:, _TIME])
        inside = panel.rows[(rows_t >= t0) & (rows_t <= t1)]
        peer_t = self.x.many(panel.peer_rows[:, _TIME])
        peer = panel.peer_rows[(peer_t >= t0) & (peer_t <= t1)]
        values = [inside[:, _SEQ], inside[:, _SEQ] + inside[:, _LEN]]
        acks = peer[peer[:, _ACK] >= 0][:, _ACK]
        if len(acks):
            values.append(acks)
        lo = float(min(np.min(v) for v in values))
        hi = float(max(np.max(v) for v in values))
        margin = max((hi - lo) * 0.05, 1.0)
        inset = ax.inset_axes(rect)
        # Only what the inset shows, and the ACK before it (the step line starts there).
        first_peer = max(0, int(np.searchsorted(peer_t, t0, side="right")) - 1)
        in_window = panel.peer_rows[first_peer:][peer_t[first_peer:] <= t1]
        shown = (rows_t >= t0) & (rows_t <= t1)
        part = _Panel(panel.sender, panel.rows[shown], in_window, panel.reached[shown])
        self.direction(inset, part, main=False, span=(t0, t1))
        inset.set_xlim(t0, t1)
        inset.set_ylim(lo - margin, hi + margin)
        inset.tick_params(labelsize=8)
        inset.xaxis.set_major_locator(MaxNLocator(nbins=4))
        inset.yaxis.set_major_locator(MaxNLocator(nbins=4))
        inset.set_facecolor("#fcfcfc")
        for spine in inset.spines.values():
            spine.set_visible(True)
            spine.set_color("#777777")
        inset.set_title(
            f"zoom: {t0:,.3f} to {t1:,.3f} {self.x.unit}",
            fontsize=9,
            loc="left",
            fontfamily=_FONT,
            color=_MUTED,
        )
        ax.indicate_inset_zoom(inset, edgecolor="#555555", alpha=0.7)

    def dense_window(self, panel: _Panel) -> tuple[float, float] | None:
        """The time window (x units) of the data's densest burst, if it is short."""
        t = np.sort(self.x.many(panel.rows[panel.rows[:, _LEN] > 0][:, _TIME]))
        n = len(t)
        span = self.span[1] - self.span[0]
        if n < _ZOOM_MIN_SEGMENTS or span <= 0:
            return None
        for share, most in _ZOOM_TRIES:
            k = max(2, int(np.ceil(n * share)))
            widths = t[k - 1 :] - t[: n - k + 1]
            i = int(np.argmin(widths))
            j = i + k - 1
            if widths[i] > span * most:
                continue
            # Widen to the whole burst: neighbours closer than a quarter of its width.
            gap = max(float(widths[i]) * 0.25, span * 0.001)
            while i > 0 and t[i] - t[i - 1] <= gap:
                i -= 1
            while j < n - 1 and t[j + 1] - t[j] <= gap:
                j += 1
            t0, t1 = float(t[i]), float(t[j])
            if t1 - t0 > span * most * 2 or t1 <= t0:
                continue
            pad = (t1 - t0) * 0.05
            return t0 - pad, t1 + pad
        return None

    def empty_corner(self, ax: Axes, panel: _Panel) -> tuple[float, float, float, float] | None:
        """Axes-fraction rectangle for the inset where nothing is drawn, if there is one."""
        if not panel.xs:
            return None
        xs = np.concatenate(panel.xs)
        ys = np.concatenate(panel.ys)
        # Sample the ACK line between its steps too: horizontal runs cross corners.
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        fx = (xs - x0) / ((x1 - x0) or 1.0)
        fy = (ys - y0) / ((y1 - y0) or 1.0)
        fx, fy = self.with_steps(panel, fx, fy, (x0, x1), (y0, y1))
        for width, height in ((0.44, 0.46), (0.36, 0.38)):
            for cx, cy in (
                (0.54, 0.06),
                (0.07, 0.47),
                (0.54, 0.47),
                (0.07, 0.06),
                (0.3, 0.06),
                (0.3, 0.47),
            ):
                rx, ry = cx, cy
                if ry + height > 0.93:
                    ry = 0.93 - height
                if rx + width > 0.99:
                    rx = 0.99 - width
                inside = (
                    (fx > rx - 0.03)
                    & (fx < rx + width + 0.02)
                    & (fy > ry - 0.03)
                    & (fy < ry + height + 0.09)
                )
                if not np.any(inside):
                    return rx, ry, width, height
        return None

    def with_steps(
        self,
        panel: _Panel,
        fx: _Floats,
        fy: _Floats,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
    ) -> tuple[_Floats, _Floats]:
        """`fx`, `fy` plus the peer's ACK line sampled at 400 points across the axes."""
        acks = panel.peer_rows[panel.peer_rows[:, _ACK] >= 0]
        if not len(acks):
            return fx, fy
        grid = np.linspace(xlim[0], xlim[1], 400)
        ta = self.x.many(acks[:, _TIME])
        index = np.searchsorted(ta, grid, side="right") - 1
        valid = index >= 0
        values = acks[:, _ACK][index[valid]].astype(np.float64)
        gx = (grid[valid] - xlim[0]) / ((xlim[1] - xlim[0]) or 1.0)
        gy = (values - ylim[0]) / ((ylim[1] - ylim[0]) or 1.0)
        return np.concatenate((fx, gx)), np.concatenate((fy, gy))

    # --- timeline, for connections without data ----------------------------------------

    def timeline(self, left: float, right: float, bottom: float, top: float) -> Axes:
        c = self.c
        explanation = _wrap(
            f"What this means: {c.verdict.verdict.explanation}",
            self.chars(right - left, 10),
            8,
        )
        self.text(
            left,
            self.fy(12),
            "\n".join(explanation),
            fontsize=10,
            va="bottom",
            linespacing=1.35,
            color=_MUTED,
        )
        bottom = self.fy(12 + 10 * 1.35 * len(explanation) + 56)
        lanes = {Side.CLIENT: 2.0, Side.SERVER: 1.0}
        names = {2.0: f"client\n{c.client}", 1.0: f"server\n{c.server}"}
        reporters = sorted({e.reporter for e in c.icmp_errors})[:3]
        for i, reporter in enumerate(reporters):
            names[-float(i)] = f"ICMP errors\nfrom {reporter}"
        widest = max(self.measure(name, 9.5) for name in names.values())
        left = max(left, self.fx(14) + widest + self.fx(8))
        ax = self.fig.add_axes((left, bottom, right - left, top - bottom))
        self.style(ax)
        ax.grid(False, axis="y")
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
        ax.set_yticks(list(names), list(names.values()), fontsize=9.5, fontfamily=_FONT)
        for y in names:
            ax.axhline(y, color="#c8c8c8", linewidth=1, zorder=1)
        ax.set_ylim(min(names) - 0.75, 2.75)
        ax.set_title(
            "no data in either direction: every packet of the connection",
            loc="left",
            fontsize=10.5,
            fontfamily=_FONT,
            color=_TEXT,
            fontweight="bold",
        )
        self.zero_windows(ax, label=True)
        lo, hi = self.xlim
        extra = (hi - lo) * 0.08
        ax.set_xlim(lo - extra, hi + extra)
        t = self.x.many(self.rows[:, _TIME])
        labels: list[tuple[float, float, str, str, bool]] = []
        for i in range(min(len(self.rows), _TIMELINE_MARKERS_MAX)):
            row = self.rows[i]
            side = Side.CLIENT if row[_SIDE] == 0 else Side.SERVER
            flags = int(row[_FLAGS])
            color, marker, size = _flag_style(flags)
            if flags & _SYN and side is Side.SERVER:
                marker = "v"
            x, y = float(t[i]), lanes[side]
            # Toward the peer, but only part of the way: the capture does not say it arrived.
            ax.annotate(
                "",
                xy=(x, y + (lanes[side.peer] - y) * 0.6),
                xytext=(x, y),
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": color,
                    "alpha": 0.35,
                    "lw": 1.2,
                    "shrinkA": 6,
                    "shrinkB": 6,
                },
            )
            ax.plot(
                [x],
                [y],
                linestyle="",
                marker=marker,
                markersize=size + 2,
                color=color,
                markeredgecolor="white",
                zorder=5,
            )
            name = _flag_name(flags)
            self.add_legend("SYN" if name == "SYN-ACK" else name, _marker(color, marker, size))
            text = f"{name} #{int(row[_PACKET])}\n{self.x.text(int(row[_TIME]))}"
            labels.append((x, y, text, color, side is Side.CLIENT))
        for error in c.icmp_errors[:_TIMELINE_MARKERS_MAX]:
            x = self.x.one(error.time_ns)
            y = -float(reporters.index(error.reporter)) if error.reporter in reporters else 0.0
            ax.annotate(
                "",
                xy=(x, y + (lanes[error.about] - y) * 0.8),
                xytext=(x, y),
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": _ICMP,
                    "alpha": 0.45,
                    "lw": 1.2,
                    "linestyle": "--",
                    "shrinkA": 8,
                    "shrinkB": 6,
                },
            )
            ax.plot(
                [x],
                [y],
                linestyle="",
                marker="*",
                markersize=15,
                color=_ICMP,
                markeredgecolor="white",
                zorder=6,
            )
            text = (
                f"{_icmp_label(error)} #{error.packet}\n{self.x.text(error.time_ns)}, "
                f"type {error.type} code {error.code}, to the {error.about}"
            )
            labels.append((x, y, text, _ICMP, False))
            self.add_legend("ICMP error tied to this connection", _marker(_ICMP, "*", 12))
        box = ax.get_window_extent(self.renderer)
        placed: list[tuple[float, float]] = []
        for x, y, text, color, above in labels[:_TIMELINE_LABELS_MAX]:
            px, py = ax.transData.transform((x, y))
            if any(abs(px - qx) < 70 * self.px_per_pt and abs(py - qy) < 1 for qx, qy in placed):
                continue
            placed.append((px, py))
            ha = "center"
            if px > box.x1 - 90 * self.px_per_pt:
                ha = "right"
            elif px < box.x0 + 90 * self.px_per_pt:
                ha = "left"
            ax.annotate(
                text,
                (x, y),
                xytext=(0, 11 if above else -11),
                textcoords="offset points",
                ha=ha,
                va="bottom" if above else "top",
                fontsize=9,
                color=color,
                fontweight="bold",
                parse_math=False,
                zorder=9,
            )
        return ax

    # --- sidebar: legend, facts, evidence ----------------------------------------------

    def sidebar(self, left: float, top: float) -> None:
        y = top
        entries = self.visible_legend()
        if entries:
            legend = self.fig.legend(
                list(entries.values()),
                list(entries),
                loc="upper left",
                bbox_to_anchor=(left, top),
                bbox_transform=self.fig.transFigure,
                frameon=False,
                fontsize=9,
                borderaxespad=0,
                handlelength=2.2,
                title="Legend",
                title_fontsize=9.5,
                alignment="left",
            )
            y = self.below(legend, 12)
        facts = self.text(
            left,
            y,
            "\n".join(self.facts()),
            fontsize=8.5,
            fontfamily=_MONO,
            va="top",
            linespacing=1.25,
        )
        y = self.below(facts, 10)
        chars = self.chars(1 - left - self.fx(4), 8, mono=True)
        lines: list[str] = []
        for i, finding in enumerate(self.c.findings):
            if not finding.evidence:
                continue
            title = f"{'verdict' if i == 0 else 'also'}: {finding.label}, evidence:"
            lines += _wrap(title, chars, 2, indent="   ")
            for e in finding.evidence[:_EVIDENCE_MAX]:
                lines += _wrap(
                    f"#{e.packet} {self.x.text(e.time_ns)} {e.what}", chars, 2, indent="   "
                )
            if len(finding.evidence) > _EVIDENCE_MAX:
                lines.append(f"… {len(finding.evidence) - _EVIDENCE_MAX} more")
        room = int((y - self.fy(6)) / self.fy(8 * 1.25))
        if room < 3 or not lines:
            return
        if len(lines) > room:
            lines = [*lines[: room - 1], "…"]
        self.text(
            left,
            y,
            "\n".join(lines),
            fontsize=8,
            fontfamily=_MONO,
            va="top",
            linespacing=1.25,
            color=_MUTED,
        )

    def facts(self) -> list[str]:
        c = self.c
        hs = c.handshake
        cd, sd = c.client_data, c.server_data

        def ms(value: int | None) -> str:
            return "-" if value is None else format_ms(value)

        table = [
            ("", "client→srv", "server→cli"),
            ("data (unique)", format_bytes(cd.unique_bytes), format_bytes(sd.unique_bytes)),
            ("data segments", f"{cd.data_segments:,}", f"{sd.data_segments:,}"),
            ("retransmitted", f"{cd.retransmission_count:,}", f"{sd.retransmission_count:,}"),
            ("MSS announced", str(cd.mss or "-"), str(sd.mss or "-")),
            ("largest segment", format_bytes(cd.largest_segment), format_bytes(sd.largest_segment)),
            ("ACK RTT median", ms(cd.ack_rtt_median_ns), ms(sd.ack_rtt_median_ns)),
            ("max window", format_bytes(cd.max_window), format_bytes(sd.max_window)),
            ("zero windows", str(len(cd.zero_windows)), str(len(sd.zero_windows))),
        ]
        width = max(12, *(len(value) + 1 for row in table for value in row[1:]))
        lines = [
            f"{c.packets:,} TCP packet{'' if c.packets == 1 else 's'} over "
            f"{format_ms(c.duration_ns)}, IPv{c.ip_version}",
            f"handshake RTT {ms(hs.rtt_ns)}"
            + (f", SYN retries {hs.syn_retries}" if hs.syn_retries else "")
            + (f", SYN-ACK retries {hs.syn_ack_retries}" if hs.syn_ack_retries else ""),
            *(f"{label:<15}{client:>{width}}{server:>{width}}" for label, client, server in table),
        ]
        if c.icmp_errors:
            lines.append(f"ICMP errors tied to it: {len(c.icmp_errors):,}")
        first = c.close.first
        lines.append(
            "close: no FIN or RST captured"
            if first is None
            else f"close: {first.kind.upper()} from the {first.side} first (#{first.packet})"
        )
        return lines
