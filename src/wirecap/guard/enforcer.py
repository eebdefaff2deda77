"""The ``Enforcer`` plug point (one method) and an in-memory nftables for tests.

``Enforcer.apply`` runs one libnftables JSON document as one transaction and
returns nft's JSON output (``{}`` when it printed nothing), or raises
:class:`~wirecap.errors.EnforcementError` with nft's message. The real ones
live in ``_nftables.py``; :class:`MemoryEnforcer` interprets the subset of the
JSON schema that ``nft.py`` writes, with nft's all-or-nothing semantics and
its error for a missing table or element, so the guard's logic can be tested
without root.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from wirecap.errors import EnforcementError

__all__ = ["Enforcer", "MemoryEnforcer"]


class Enforcer(Protocol):
    """Runs libnftables JSON: ``{"nftables": [commands]}`` in, nft's JSON output back."""

    def apply(self, document: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass
class _Set:
    type: str
    flags: list[str]
    #: address text -> (timeout s or None, added at s, comment or None)
    elements: dict[str, tuple[int | None, float, str | None]] = field(default_factory=dict)


@dataclass
class _Table:
    sets: dict[str, _Set] = field(default_factory=dict)
    chains: dict[str, list[Any]] = field(default_factory=dict)


_ENOENT = "Error: Could not process rule: No such file or directory"


class MemoryEnforcer:
    """An nftables that lives in a dict; ``clock()`` gives seconds for element expiry.

    Set ``failure`` to a message to make every call fail as an unreachable nft would.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.tables: dict[tuple[str, str], _Table] = {}
        self.failure: str | None = None
        #: Every document applied, in order (successful or not).
        self.documents: list[Mapping[str, Any]] = []

    def apply(self, document: Mapping[str, Any]) -> dict[str, Any]:
        self.documents.append(copy.deepcopy(dict(document)))
        if self.failure is not None:
            raise EnforcementError(self.failure)
        self._expire()
        work = copy.deepcopy(self.tables)
        listed: list[dict[str, Any]] = []
        for command in document["nftables"]:
            ((verb, body),) = command.items()
            ((kind, spec),) = body.items()
            getattr(self, f"_{verb}_{kind}")(work, spec, listed)
        self.tables = work
        return {"nftables": listed} if listed else {}

    # -- verbs ------------------------------------------------------------------------

    def _table(self, work: dict[tuple[str, str], _Table], spec: Mapping[str, Any]) -> _Table:
        table = work.get((spec["family"], spec["table"]))
        if table is None:
            raise EnforcementError(_ENOENT)
        return table

    def _set(self, work: dict[tuple[str, str], _Table], spec: Mapping[str, Any]) -> _Set:
        found = self._table(work, spec).sets.get(spec["name"])
        if found is None:
            raise EnforcementError(_ENOENT)
        return found

    def _add_table(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        work.setdefault((spec["family"], spec["name"]), _Table())

    def _delete_table(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        if work.pop((spec["family"], spec["name"]), None) is None:
            raise EnforcementError(_ENOENT)

    def _add_set(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        self._table(work, spec).sets.setdefault(
            spec["name"], _Set(spec["type"], list(spec.get("flags", [])))
        )

    def _add_chain(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        self._table(work, spec).chains.setdefault(spec["name"], [])

    def _flush_chain(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        table = self._table(work, spec)
        if spec["name"] not in table.chains:
            raise EnforcementError(_ENOENT)
        table.chains[spec["name"]] = []

    def _add_rule(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        table = self._table(work, spec)
        if spec["chain"] not in table.chains:
            raise EnforcementError(_ENOENT)
        table.chains[spec["chain"]].append(spec["expr"])

    def _add_element(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        target = self._set(work, spec)
        now = self._clock()
        for item in spec["elem"]:
            fields = item["elem"] if isinstance(item, Mapping) else {"val": item}
            # nft's "add" leaves an existing element as it is.
            target.elements.setdefault(
                fields["val"], (fields.get("timeout"), now, fields.get("comment"))
            )

    def _delete_element(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        target = self._set(work, spec)
        for value in spec["elem"]:
            if target.elements.pop(value, None) is None:
                raise EnforcementError(_ENOENT)

    def _flush_set(self, work: dict[tuple[str, str], _Table], spec: Any, _: Any) -> None:
        self._set(work, spec).elements.clear()

    def _list_set(
        self, work: dict[tuple[str, str], _Table], spec: Any, listed: list[dict[str, Any]]
    ) -> None:
        found = self._set(work, spec)
        now = self._clock()
        members: list[Any] = []
        for value, (timeout, added, comment) in found.elements.items():
            if timeout is None:
                members.append(value)
                continue
            fields: dict[str, Any] = {
                "val": value,
                "timeout": timeout,
                "expires": max(0, int(added + timeout - now)),
            }
            if comment is not None:
                fields["comment"] = comment
            members.append({"elem": fields})
        body: dict[str, Any] = {
            "family": spec["family"],
            "name": spec["name"],
            "table": spec["table"],
            "type": found.type,
            "flags": found.flags,
        }
        if members:
            body["elem"] = members
        listed.append({"set": body})

    def _list_chain(
        self, work: dict[tuple[str, str], _Table], spec: Any, listed: list[dict[str, Any]]
    ) -> None:
        table = self._table(work, spec)
        if spec["name"] not in table.chains:
            raise EnforcementError(_ENOENT)
        for expr in table.chains[spec["name"]]:
            # Nothing passes through memory: every counter reads zero.
            shown = [
                {"counter": {"packets": 0, "bytes": 0}} if item == {"counter": None} else item
                for item in expr
            ]
            rule = {"family": spec["family"], "table": spec["table"], "chain": spec["name"]}
            listed.append({"rule": {**rule, "expr": shown}})

    def _expire(self) -> None:
        now = self._clock()
        for table in self.tables.values():
            for found in table.sets.values():
                gone = [
                    value
                    for value, (timeout, added, _) in found.elements.items()
                    if timeout is not None and added + timeout <= now
                ]
                for value in gone:
                    del found.elements[value]

    def elements(self, family: str, table: str, name: str) -> dict[str, int | None]:
        """Address -> timeout of one set (for assertions)."""
        self._expire()
        found = self.tables[(family, table)].sets[name]
        return {value: entry[0] for value, entry in found.elements.items()}
