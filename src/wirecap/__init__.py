"""wirecap: record network traffic for diagnostics and explain what was recorded.

Layers (each imports only those below it)::

    cli/        command-line front ends; the only place defaults are read
    core/       capture engine, pcap/pcapng codecs, merge, packet headers
"""

from wirecap._version import __version__

__all__ = ["__version__"]
