"""One session's outgoing stream: the ``seq`` numbering and the replay buffer.

Pure, like the rest of :mod:`xes.core`: it never sends anything. The shell stamps each message it
sends to a session here (:meth:`Outbox.post`, or :meth:`Outbox.keep` for the relay's spliced
frames) and writes the result to the session's socket, if it has one; on ``resume`` the core reads
back what the client missed (:meth:`Outbox.since`). docs/protocol.md, "Sessions", is the contract.

Rules:

- ``seq`` starts at 1 for the first message after ``hello`` and grows by exactly one per message,
  so the retained frames are a contiguous run ``first_seq .. seq`` and need no index of their own.
- At most ``max_frames`` frames and ``max_bytes`` bytes are retained. While attached, the oldest
  drop out. While detached (:meth:`hold`), a frame produced since the detach is never dropped:
  :meth:`keep` says False when one would have to be, and the core ends the session.

Plain values only (ints and a list of bytes), so a snapshot of the server's state can copy them.
A list, not a deque: an idle session holds one or two frames, and an empty deque costs ~600
bytes where a short list costs ~90 (measured per idle connection); dropping the oldest of 256
pointers is one short memmove.
"""

from __future__ import annotations

from ..protocol.messages import with_seq

__all__ = ["Outbox"]


class Outbox:
    """The ``seq`` counter and the replay buffer of one session. Created on its first message."""

    __slots__ = ("seq", "frames", "size", "held_from", "max_frames", "max_bytes", "continues")

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.seq = 0                       # the last seq assigned
        self.frames: list[bytes] = []      # frames first_seq .. seq, oldest first
        self.size = 0                      # their bytes
        self.held_from: int | None = None  # while detached: the first seq produced since
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        # Set on a session a cluster node took over from a dead one (core.snapshot.import_room):
        # the client may have seen messages this outbox never knew of, so the first resume that
        # is ahead continues numbering above it instead of failing (docs/protocol.md, "Sessions").
        self.continues = False

    @property
    def first_seq(self) -> int:
        """The seq of the oldest retained frame (``seq + 1`` when none is retained)."""
        return self.seq - len(self.frames) + 1

    def post(self, payload: bytes) -> bytes | None:
        """Number ``payload`` (an encoded server message), retain it, and return the frame to send;
        None if the session is detached and the frame does not fit (the session must end)."""
        frame = with_seq(payload, self.seq + 1)
        return frame if self.keep(frame) else None

    def keep(self, frame: bytes) -> bool:
        """Retain ``frame``, already stamped with ``seq + 1`` (the relay splices its own).

        Returns False if the session is detached and keeping it would drop a frame produced since
        the detach: the session can no longer resume cleanly. The frame is counted either way.
        """
        self.seq += 1
        frames = self.frames
        frames.append(frame)
        size = self.size + len(frame)
        if size > self.max_bytes or len(frames) > self.max_frames:
            if self.held_from is not None:
                self.size = size
                return self._trim()
            # Attached and full (the relay's steady state): drop the oldest, inline.
            size -= len(frames.pop(0))
            if size > self.max_bytes:  # a big frame pushed out more than one
                self.size = size
                return self._trim()
        self.size = size
        return True

    def _trim(self) -> bool:
        frames = self.frames
        while len(frames) > self.max_frames or self.size > self.max_bytes:
            if self.held_from is not None and self.seq - len(frames) + 1 >= self.held_from:
                return False
            self.size -= len(frames.pop(0))
        return True

    def restore(self, seq: int, frames: list[bytes]) -> None:
        """Take back what a snapshot kept (core.snapshot): the last ``seq`` and the frames up to
        it. Bounds hold as ever: the oldest frames drop out if they were lowered meanwhile."""
        self.seq = seq - len(frames)
        for frame in frames:
            self.keep(frame)

    def hold(self) -> None:
        """The session detached: from now on nothing produced may be dropped."""
        self.held_from = self.seq + 1

    def release(self) -> None:
        """The session is attached again: old frames may drop out as before."""
        self.held_from = None

    def since(self, last_seq: int) -> list[bytes] | None:
        """The frames after ``last_seq``, in order; None if some were dropped (a gap) or
        ``last_seq`` is ahead of what was ever sent (unless :attr:`continues`: then nothing is
        replayed and the numbering goes on after ``last_seq``)."""
        if self.continues and last_seq + 1 >= self.first_seq:
            # Taken over at `first_seq - 1`: every frame held was made since, by this node; the
            # client's numbers up to `last_seq` were the old node's. Numbered on after them.
            self.continues = False
            made_here = [frame[:frame.rindex(b',"seq":')] + b"}" for frame in self.frames]
            self.seq, self.frames, self.size, self.held_from = last_seq, [], 0, None
            renumbered = []
            for payload in made_here:
                frame = self.post(payload)
                assert frame is not None  # nothing is held: nothing can be refused
                renumbered.append(frame)
            return renumbered
        if last_seq > self.seq or last_seq + 1 < self.first_seq:
            return None
        skip = last_seq + 1 - self.first_seq
        return self.frames[skip:]
