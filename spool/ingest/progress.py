"""Which offsets are spooled: the rule CommitOffsets commits by.

DecodeAndShape hands its parts over in *takes*: it files every record of some chunks into
parts (or applies it: a Singer SCHEMA or STATE) and then emits those parts together. A take
is known by its id, the offsets its chunks account for (``[start, stop)`` per partition) and
how many parts it emitted. Each part carries its take id and its index in the take, and
every batch the spool job records says which parts it holds (take id → bitmask of indexes).

1. A take is *spooled* once every one of its parts is in a recorded batch (a take with no
   parts, only control messages, is spooled as soon as it is known).
2. A partition is spooled from the offset this job started it at (its *origin*) through the
   ranges of spooled takes, in offset order, up to the first range whose take is not.
3. That offset is what may be committed: every record before it is in the ledger.

Why bookkeeping and not the watermark: a runner may deliver a part after its window closed
(a split bundle's residual, a late read); BatchByTable then writes it in a later pane, after
the watermark has passed its window. A commit that waited only for the watermark would have
passed its records, and a crash before that later pane was written would lose them.
A duplicate part (a runner that processes one twice) sets a bit already set: it cannot
stand in for a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Take:
    ranges: list[tuple[int, int, int]]  # (partition, start, stop)
    parts: int
    seen_at: float  # when CommitOffsets learnt of it (wall clock: only for the stall warning)
    left: int = 0  # ranges not yet passed by their partition's cursor

    @property
    def full(self) -> int:
        return (1 << self.parts) - 1


@dataclass
class Progress:
    origin: dict[int, int] = field(default_factory=dict)
    cursor: dict[int, int] = field(default_factory=dict)  # spooled up to here (exclusive)
    takes: dict[str, Take] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)  # take id → parts recorded (bits)
    starts: dict[int, dict[int, tuple[int, str]]] = field(default_factory=dict)

    def add_take(self, take_id: str, ranges: list[tuple[int, int, int]],
                 origins: dict[int, int], parts: int, now: float) -> None:
        """A take DecodeAndShape emitted: its ranges, the origin of each of their
        partitions (the same for every take of this job) and its number of parts."""
        if take_id in self.takes:
            return  # the same take again (a replayed bundle): nothing new
        for partition, origin in origins.items():
            if partition not in self.origin:
                self.origin[partition] = origin
                self.cursor.setdefault(partition, origin)
        take = Take(ranges=list(ranges), parts=parts, seen_at=now)
        for partition, start, stop in take.ranges:
            if start >= self.cursor.get(partition, start) and stop > start:
                self.starts.setdefault(partition, {})[start] = (stop, take_id)
                take.left += 1
        self.takes[take_id] = take

    def add_recorded(self, masks: dict[str, int]) -> None:
        """Parts now in recorded batches: take id → bitmask of their indexes."""
        for take_id, mask in masks.items():
            self.recorded[take_id] = self.recorded.get(take_id, 0) | mask

    def spooled(self, take_id: str) -> bool:
        take = self.takes.get(take_id)
        return take is not None and (self.recorded.get(take_id, 0) & take.full) == take.full

    def advance(self) -> dict[int, int]:
        """Move each partition's cursor as far as rule 2 allows; returns the partitions
        that moved, with their new cursor (the offset to commit)."""
        moved = {}
        for partition, starts in self.starts.items():
            at = self.cursor[partition]
            while at in starts and self.spooled(starts[at][1]):
                stop, take_id = starts.pop(at)
                at = stop
                take = self.takes[take_id]
                take.left -= 1
                if take.left <= 0:
                    del self.takes[take_id]
                    self.recorded.pop(take_id, None)
            if at != self.cursor[partition]:
                self.cursor[partition] = at
                moved[partition] = at
        return moved

    def waiting(self, now: float, after_s: float) -> list[dict]:
        """Partitions whose cursor has waited ``after_s`` or more for a take that is not
        spooled: what is missing, for the log line that says so."""
        out = []
        for partition, starts in sorted(self.starts.items()):
            at = self.cursor[partition]
            if at not in starts:
                continue
            take_id = starts[at][1]
            take = self.takes[take_id]
            if now - take.seen_at < after_s:
                continue
            missing = take.parts - bin(self.recorded.get(take_id, 0) & take.full).count("1")
            out.append({"partition": partition, "offset": at, "take": take_id,
                        "parts": take.parts, "missing": missing,
                        "seconds": round(now - take.seen_at)})
        return out
