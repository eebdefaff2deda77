"""Time-sequence plots: valid PNGs of the golden fault captures, with the verdict and marks."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from matplotlib.artist import Artist
from matplotlib.collections import Collection, LineCollection
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D
from matplotlib.text import Text

from tests.analysis.frames import CLIENT, SERVER, Script, bulk_capture
from wirecap.analysis import Connection, Report, TimeSequence, analyze_file
from wirecap.analysis.plot import (
    DOWNSAMPLE_BINS,
    MAX_SEGMENTS,
    build_figure,
    plot_connection,
    render_png,
)

DATA = Path(__file__).parents[1] / "data" / "analysis"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL = (
    "normal",
    "refused",
    "no_answer",
    "icmp_unreachable",
    "reset_by_server",
    "reset_by_client",
    "pmtud_blackhole_sender",
    "pmtud_blackhole_receiver",
    "pmtud_working",
    "pmtud_working_v6",
    "heavy_loss",
    "zero_window",
    "slow_handshake",
    "spurious_retransmission",
    "truncated",
)
_reports: dict[str, Report] = {}


def golden(name: str) -> tuple[Report, Connection]:
    """A golden capture's report (analysed once per run) and its one connection."""
    path = DATA / f"{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path} has not been made (tests/data/make_analysis_captures.py)")
    if name not in _reports:
        _reports[name] = analyze_file(path)
    report = _reports[name]
    assert len(report.connections) == 1
    return report, report.connections[0]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def pixels(data: bytes) -> npt.NDArray[np.uint32]:
    """The PNG's pixels, read back by matplotlib, as one RGBA integer each."""
    image = imread(io.BytesIO(data), format="png")
    assert image.ndim == 3 and image.shape[2] == 4
    rgba = np.ascontiguousarray((image * 255).round().astype(np.uint8))
    return rgba.view(np.uint32).reshape(-1)


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


def legend(fig: Figure) -> list[str]:
    """The sidebar legend's entries, in order."""
    (box,) = fig.legends
    return [t.get_text() for t in box.get_texts()]


def by_gid(fig: Figure, gid: str) -> list[Artist]:
    return list(fig.findobj(lambda a: a.get_gid() == gid))


def points(artists: Sequence[Artist]) -> int:
    """Markers drawn by Line2D artists, segments by collections."""
    total = 0
    for artist in artists:
        if isinstance(artist, Line2D):
            total += len(artist.get_xdata())  # type: ignore[arg-type]
        elif isinstance(artist, LineCollection):
            total += len(artist.get_segments())
        elif isinstance(artist, Collection):
            total += len(artist.get_paths())
    return total


# --- every golden capture -----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_png_is_valid_sized_and_not_blank(name: str) -> None:
    report, connection = golden(name)
    data = render_png(report, connection)
    assert png_size(data) == (1400, 800)
    values = pixels(data)
    assert len(values) == 1400 * 800
    # Text, lines in several colours and antialiasing: hundreds of colours (a blank or
    # nearly blank image has a handful), and a fair share of the image drawn on.
    assert len(np.unique(values)) > 150
    white = np.array([0xFFFFFFFF], dtype=np.uint32)[0]
    assert np.count_nonzero(values != white) > 0.03 * len(values)


@pytest.mark.parametrize("name", ALL)
def test_figure_names_the_connection_and_its_verdicts(name: str) -> None:
    report, connection = golden(name)
    fig = build_figure(report, connection)
    shown = "\n".join(texts(fig))
    assert f"Connection {connection.index}: {connection.client} → {connection.server}" in shown
    for finding in connection.findings:
        assert finding.label in shown
    assert connection.verdict.detail.split()[0] in shown
    # Time and sequence axes are labelled with their units.
    labels = [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    assert any(label.startswith("time (") for label in labels)
    if connection.client_data.payload_bytes or connection.server_data.payload_bytes:
        assert any("seq" in label and label.endswith(("(bytes)", "(kB)", "(MB)"))
                   for label in labels)  # fmt: skip


# --- what each fault looks like -------------------------------------------------------------


def test_heavy_loss_marks_every_retransmission() -> None:
    report, connection = golden("heavy_loss")
    fig = build_figure(report, connection)
    resends = connection.client_data.retransmissions
    resent = [r for r in resends if not r.pmtud and not r.spurious]
    assert len(resent) >= 5
    markers = [a for a in by_gid(fig, "retransmissions") if isinstance(a, Line2D)]
    # The main panel and its zoomed inset both mark them; the main panel marks them all.
    assert max(points([m]) for m in markers) == len(resent)
    # The two resends the receiver reported as duplicates (D-SACK) are marked apart.
    spurious = [a for a in by_gid(fig, "spurious-resends") if isinstance(a, Line2D)]
    assert max(points([m]) for m in spurious) == sum(r.spurious for r in resends) == 2
    assert points(by_gid(fig, "dsack")) >= 2
    assert {"retransmission", "spurious retransmission (not lost)"} <= set(legend(fig))
    assert any(t.startswith("zoom: ") for t in texts(fig))


def test_legend_lists_only_marks_the_graph_shows() -> None:
    report, connection = golden("normal")
    fig = build_figure(report, connection)
    # The window edge is drawn but lies wholly above the data (the text says "off scale").
    assert by_gid(fig, "window-edge")
    assert any("receive window edge off scale" in t for t in texts(fig))
    assert legend(fig) == [
        "ACK line (peer's cumulative ACK)",
        "data segment (seq to seq + length)",
        "SYN",
        "FIN",
    ]
    report, connection = golden("pmtud_working")
    shown = legend(build_figure(report, connection))
    assert {
        "receive window edge (ACK + window)",
        "duplicate ACK",
        "SACK block (reported by the peer)",
        "re-sent smaller after ICMP too-big",
    } <= set(shown)
    assert "out-of-order segment (reordering)" not in shown


def test_duplicate_acks_and_out_of_order_segments_are_marked() -> None:
    s = Script()
    s.handshake(rtt_ms=10)
    first = s.isn[SERVER] + 1
    s.data(SERVER, 1000, 20, seq=first)
    s.data(SERVER, 1000, 20.2, seq=first + 2000)
    s.ack(CLIENT, 20.3, upto=first + 1000)
    s.ack(CLIENT, 20.4, upto=first + 1000)  # a duplicate: 2000 bytes still outstanding
    s.data(SERVER, 1000, 21, seq=first + 1000)  # within the RTT: reordering
    s.ack(CLIENT, 21.1)
    s.close(30)
    report = s.analyze()
    (connection,) = report.connections
    assert [r.packet for r in connection.client_data.duplicate_acks] == [7]
    assert [r.packet for r in connection.server_data.out_of_order] == [8]
    fig = build_figure(report, connection)
    (dup,) = [a for a in by_gid(fig, "duplicate-acks") if isinstance(a, Line2D)]
    assert list(dup.get_ydata()) == [1001]  # type: ignore[arg-type]
    assert points(by_gid(fig, "out-of-order")) == 2  # its bar and its tick
    shown = legend(fig)
    assert {"duplicate ACK", "out-of-order segment (reordering)"} <= set(shown)
    assert not {"SACK block (reported by the peer)", "retransmission"} & set(shown)


def test_black_hole_at_the_sender_shows_unacknowledged_retransmissions() -> None:
    report, connection = golden("pmtud_blackhole_sender")
    fig = build_figure(report, connection)
    markers = [a for a in by_gid(fig, "retransmissions") if isinstance(a, Line2D)]
    assert points(markers) == connection.client_data.retransmission_count == 5
    # Neither ACK line ever leaves the first byte: nothing was acknowledged either way.
    acks = [a for a in by_gid(fig, "ack") if isinstance(a, Line2D)]
    assert len(acks) == 2
    assert all(set(np.asarray(a.get_ydata()).tolist()) == {1} for a in acks)
    assert not by_gid(fig, "icmp")


def test_black_hole_at_the_receiver_shows_the_bytes_never_seen() -> None:
    report, connection = golden("pmtud_blackhole_receiver")
    fig = build_figure(report, connection)
    assert by_gid(fig, "gap-segments")
    assert any("15,928 B never seen" in t for t in texts(fig))


def test_pmtud_working_labels_the_icmp_errors() -> None:
    report, connection = golden("pmtud_working")
    fig = build_figure(report, connection)
    labels = [a for a in by_gid(fig, "icmp-label") if isinstance(a, Text)]
    assert len(labels) == 1
    assert labels[0].get_text() == "ICMP frag needed, MTU 1280 ×10 from 10.201.1.1"
    # One dashed line per error on each panel, a star on each quoted segment.
    assert points(by_gid(fig, "icmp")) >= 2 * len(connection.icmp_errors) == 20
    assert points(by_gid(fig, "icmp-quoted")) >= 10
    assert points(by_gid(fig, "pmtud-resends")) > 0


def test_pmtud_working_v6_says_packet_too_big() -> None:
    report, connection = golden("pmtud_working_v6")
    fig = build_figure(report, connection)
    labels = [a.get_text() for a in by_gid(fig, "icmp-label") if isinstance(a, Text)]
    assert labels == ["ICMPv6 packet too big, MTU 1280 ×10 from fd01:1::1"]


def test_zero_window_is_shaded_and_probes_marked() -> None:
    report, connection = golden("zero_window")
    fig = build_figure(report, connection)
    assert by_gid(fig, "zero-window")
    assert any(t.startswith("client window 0 for 2,906.3 ms") for t in texts(fig))
    probes = [a for a in by_gid(fig, "probes") if isinstance(a, Line2D)]
    assert max(points([p]) for p in probes) == connection.server_data.zero_window_probes == 3


def test_refused_gets_a_timeline_with_the_explanation() -> None:
    report, connection = golden("refused")
    fig = build_figure(report, connection)
    shown = texts(fig)
    assert "SYN #1\n+0.000 µs" in shown
    assert any(t.startswith("RST #2\n+38.") for t in shown)
    assert any(t.startswith("What this means: The server side answered the SYN with a RST")
               for t in shown)  # fmt: skip
    assert len(fig.axes) == 1


def test_icmp_unreachable_timeline_names_the_router() -> None:
    report, connection = golden("icmp_unreachable")
    fig = build_figure(report, connection)
    shown = "\n".join(texts(fig))
    assert "ICMP errors\nfrom 10.201.1.1" in shown
    assert "type 3 code 13, to the client" in shown


# --- API: sizes, files, threads, big connections ---------------------------------------------


def test_size_is_honoured_and_too_small_refused() -> None:
    report, connection = golden("normal")
    assert png_size(render_png(report, connection, width_px=1000, height_px=600)) == (1000, 600)
    assert png_size(render_png(report, connection, width_px=2100, height_px=1200)) == (
        2100,
        1200,
    )
    with pytest.raises(ValueError, match="too small"):
        build_figure(report, connection, width_px=100, height_px=100)


def test_plot_connection_writes_atomically(tmp_path: Path) -> None:
    report, connection = golden("normal")
    target = tmp_path / "normal.png"
    target.write_bytes(b"old")
    written = plot_connection(report, connection, str(target))
    assert written == target
    data = target.read_bytes()
    assert png_size(data) == (1400, 800)
    assert data == render_png(report, connection)
    assert [p.name for p in tmp_path.iterdir()] == ["normal.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_plot_connection_leaves_nothing_on_failure(tmp_path: Path) -> None:
    report, connection = golden("normal")
    with pytest.raises(OSError):
        plot_connection(report, connection, tmp_path / "missing" / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_text_is_never_mathtext() -> None:
    report, connection = golden("normal")
    odd = dataclasses.replace(
        connection,
        verdict=dataclasses.replace(connection.verdict, detail="costs $5 and $x^2$ \\alpha"),
    )
    fig = build_figure(report, odd)
    assert "costs $5 and $x^2$ \\alpha" in texts(fig)
    assert png_size(render_png(report, odd)) == (1400, 800)


def test_threads_render_the_same_bytes() -> None:
    report, connection = golden("heavy_loss")
    expected = render_png(report, connection)
    results: list[bytes] = []

    def work() -> None:
        results.append(render_png(report, connection))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_pyplot_is_never_imported() -> None:
    path = DATA / "normal.pcap"
    if not path.exists():
        pytest.skip(f"{path} has not been made")
    code = (
        "import sys\n"
        "from wirecap.analysis import analyze_file\n"
        "from wirecap.analysis.plot import render_png\n"
        f"r = analyze_file({str(path)!r})\n"
        "render_png(r, r.connections[0])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_empty_series_still_plots() -> None:
    report, connection = golden("normal")
    empty = dataclasses.replace(connection, series=TimeSequence(b""))
    assert png_size(render_png(report, empty)) == (1400, 800)


def test_big_connection_is_downsampled(tmp_path: Path) -> None:
    path = tmp_path / "bulk.pcap"
    bulk_capture(path, connections=1, segments=40_000, loss_every=97)
    report = analyze_file(path)
    (connection,) = report.connections
    assert len(connection.series) > MAX_SEGMENTS
    started = time.perf_counter()
    fig = build_figure(report, connection)
    data = io.BytesIO()
    fig.savefig(data, format="png")
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"{elapsed:.1f} s to plot {len(connection.series):,} segments"
    assert any("drawn as 2,000 time bins" in ax.get_xlabel() for ax in fig.axes)
    data_bars = [a for a in by_gid(fig, "data") if isinstance(a, LineCollection)]
    assert data_bars and all(len(a.get_segments()) <= DOWNSAMPLE_BINS for a in data_bars)
    for ack in by_gid(fig, "ack"):
        assert isinstance(ack, Line2D)
        assert len(ack.get_xdata()) <= DOWNSAMPLE_BINS + 1  # type: ignore[arg-type]
    # A few dozen artists, not one per segment.
    assert len(fig.findobj(Artist)) < 1000
