"""The guard's table in nftables, driven through an ``Enforcer``; restart planning.

:class:`Firewall` turns block decisions into nft transactions and reads the sets
back; it does no I/O of its own (the enforcer does), so it runs against
:class:`~wirecap.guard.enforcer.MemoryEnforcer` in tests. :func:`plan_restore` is
pure: it decides, at start, which blocks to take over and which to put back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from wirecap.errors import EnforcementError
from wirecap.guard import nft
from wirecap.guard.detectors import Reason
from wirecap.guard.enforcer import Enforcer
from wirecap.guard.nft import NftLayout, SetElement
from wirecap.guard.policy import Block
from wirecap.guard.statefile import GuardState, SavedBlock

__all__ = ["PERMANENT_NS", "Firewall", "RestorePlan", "plan_restore", "remaining_block"]

_NS = 1_000_000_000
#: How far ahead "never expires" is put for an element added without a timeout
#: (by hand): nft's longest timeout, about 49 days.
PERMANENT_NS = 49 * 86400 * _NS


class Firewall:
    """Block sets in one nft table; every method is one nft transaction."""

    def __init__(self, enforcer: Enforcer, layout: NftLayout) -> None:
        self.enforcer = enforcer
        self.layout = layout

    def setup(self) -> None:
        try:
            self.enforcer.apply(nft.request(nft.setup_commands(self.layout)))
        except EnforcementError as exc:
            if self.layout.kernel_limit is None or "File exists" not in str(exc):
                raise
            commands = nft.setup_commands(self.layout, limit_sets_exist=True)
            self.enforcer.apply(nft.request(commands))

    def elements(self) -> list[SetElement]:
        """Both sets' elements; EnforcementError when the table or a set is missing."""
        # One list command per document: nft 1.0.6 fails a JSON batch of two with ENOENT.
        elements: list[SetElement] = []
        for command in nft.list_commands(self.layout):
            reply = self.enforcer.apply(nft.request([command]))
            elements.extend(nft.parse_elements(reply, self.layout))
        return elements

    def elements_or_none(self) -> list[SetElement] | None:
        """Like :meth:`elements`, None when the table does not exist."""
        try:
            return self.elements()
        except EnforcementError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise

    def drop_counters(self) -> dict[str, int]:
        """Packets the kernel dropped so far: from blocked addresses, over the SYN limit."""
        reply = self.enforcer.apply(nft.request(nft.list_chain_commands(self.layout)))
        return nft.parse_drop_counters(reply, self.layout)

    def add(self, blocks: Sequence[Block]) -> None:
        if blocks:
            self.enforcer.apply(nft.request(nft.block_commands(self.layout, blocks)))

    def remove(self, addresses: Iterable[bytes]) -> list[bytes]:
        """Delete those of ``addresses`` that are in the sets; the ones deleted."""
        wanted = set(addresses)
        present = [e.address for e in self.elements() if e.address in wanted]
        if present:
            self.enforcer.apply(nft.request(nft.unblock_commands(self.layout, present)))
        return present

    def flush(self) -> list[bytes]:
        """Empty both sets; the addresses that were in them."""
        present = [e.address for e in self.elements()]
        self.enforcer.apply(nft.request(nft.flush_commands(self.layout)))
        return present

    def teardown(self) -> None:
        self.enforcer.apply(nft.request(nft.teardown_commands(self.layout)))


def remaining_block(block: Block, now_ns: int) -> Block | None:
    """``block`` with its timeout cut to the time it has left; None when it has none."""
    left = math.ceil((block.until_ns - now_ns) / _NS)
    if left <= 0:
        return None
    return block._replace(timeout_s=min(block.timeout_s, left))


class RestorePlan(NamedTuple):
    #: Blocks the policy takes over (from the kernel set, or put back).
    active: tuple[SavedBlock, ...]
    #: Blocks to add to the kernel again, with the time they have left.
    readd: tuple[Block, ...]


def plan_restore(kernel: list[SetElement] | None, saved: GuardState, now_ns: int) -> RestorePlan:
    """Merge what the kernel holds with the state file, at start.

    When the table exists (``kernel`` is a list) the kernel is the truth: its
    elements are kept with the time they have left, their reason and offence from
    the element comment or the state file; saved blocks missing from it were lifted
    (``wirecap guard unblock``, ``nft delete element``) or ran out. When the table is
    gone (``kernel`` is None, after a reboot or a flushed ruleset) every saved block
    with time left is added back.
    """
    saved_by_address = {b.address: b for b in saved.blocks}
    if kernel is None:
        active = tuple(b for b in saved.blocks if b.until_ns > now_ns)
        readd = tuple(
            Block(
                b.address,
                math.ceil((b.until_ns - now_ns) / _NS),
                b.reason,
                b.offence,
                "restored from the state file",
                b.until_ns,
            )
            for b in active
        )
        return RestorePlan(active, readd)
    taken: list[SavedBlock] = []
    for element in kernel:
        if element.expires_s is None:
            until = now_ns + PERMANENT_NS
        else:
            until = now_ns + element.expires_s * _NS
        known = nft.parse_comment(element.comment)
        if known is None:
            prior = saved_by_address.get(element.address)
            known = (prior.reason, prior.offence) if prior else (Reason.MANUAL, 1)
        taken.append(SavedBlock(element.address, until, known[0], known[1]))
    return RestorePlan(tuple(taken), ())
