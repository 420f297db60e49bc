"""Contiguous-completion offset tracking: commit only what is finished, in order.

Conversations from one partition finish out of order; the committable offset of
a partition is the first offset not yet finished (Kafka's "next offset to read").
Pure logic, no Kafka types: partitions are any hashable key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _Partition:
    epoch: int
    pending: deque[int] = field(default_factory=deque)  # offsets started, in order
    done: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the last offset started


@dataclass(frozen=True)
class Ticket:
    """Proof of a started offset; finishing it after a reset or revoke does nothing."""

    partition: Hashable
    epoch: int
    offset: int


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}
        self._epochs = 0

    def start(self, partition: Hashable, offset: int) -> Ticket:
        state = self._partitions.get(partition)
        if state is None or (state.next_offset is not None and offset < state.next_offset):
            # New partition, or offsets went backwards (the broker lost its log, or a
            # reset): what was in flight belongs to the old log and is not counted.
            self._epochs += 1
            state = self._partitions[partition] = _Partition(epoch=self._epochs)
        state.pending.append(offset)
        state.next_offset = offset + 1
        return Ticket(partition, state.epoch, offset)

    def finish(self, ticket: Ticket) -> None:
        state = self._partitions.get(ticket.partition)
        if state is None or state.epoch != ticket.epoch:
            return  # revoked or reset meanwhile; the offset is not ours to commit
        offset = ticket.offset
        state.done.add(offset)
        while state.pending and state.pending[0] in state.done:
            state.done.discard(state.pending.popleft())

    def committable(self, partition: Hashable) -> int | None:
        """The offset to commit (first unfinished one), or None if nothing was started."""
        state = self._partitions.get(partition)
        if state is None or state.next_offset is None:
            return None
        return state.pending[0] if state.pending else state.next_offset

    def in_flight(self, partition: Hashable) -> int:
        state = self._partitions.get(partition)
        return 0 if state is None else len(state.pending) - len(state.done)

    def forget(self, partition: Hashable) -> None:
        self._partitions.pop(partition, None)

    def partitions(self) -> list[Hashable]:
        return list(self._partitions)
