"""Audio in and out of the Python peer: file and microphone sources, taps, WAV recording.

This is the only module that opens files or devices. Everything works on aiortc
``MediaStreamTrack``s whose frames are ``av.AudioFrame``s.

- A *source* (:func:`open_file_source`, :func:`open_microphone`) is one track; the peer sends
  it to every member through an aiortc ``MediaRelay``, one subscription per link.
- Each remote member's track is always drained by a :class:`RemoteAudio`, even when nobody
  listens: aiortc queues received frames without a bound, so an unread track would grow for
  the whole call. Listeners get their own bounded :class:`AudioTap`.
- :class:`WavRecorder` mixes any number of taps into one mono 48 kHz 16-bit WAV file, on its own
  clock, so silence from one member or a late joiner does not stall the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import wave
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

from xes.peer.errors import AudioError

__all__ = [
    "SAMPLE_RATE",
    "open_file_source",
    "open_microphone",
    "capture_device_available",
    "AudioTap",
    "RemoteAudio",
    "WavRecorder",
    "frame_to_mono",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
"""Sample rate of everything the peer records (Opus decodes at 48 kHz)."""

_TAP_QUEUE_FRAMES = 50  # one second of 20 ms frames; a slower listener loses the oldest


def open_file_source(path: str | os.PathLike[str], *, loop: bool = False) -> MediaStreamTrack:
    """Open an audio file (anything FFmpeg reads: WAV, MP3, Ogg, ...) as a track to send.

    Args:
        path: The file.
        loop: Start over at the end, forever. Without it the track ends with the file, and
            the peer stays in the call, silent.

    Raises:
        AudioError: If the file does not exist, cannot be read, holds no audio, or cannot be
            looped (not seekable).
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise AudioError(f"cannot read audio file {str(path)!r}: no such file")
    if not os.access(file_path, os.R_OK):
        raise AudioError(f"cannot read audio file {str(path)!r}: permission denied")
    try:
        player = MediaPlayer(str(file_path), loop=False)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise AudioError(f"cannot read audio file {str(path)!r}: {error}") from None
    if player.audio is None:
        raise AudioError(f"audio file {str(path)!r} has no audio stream")
    if loop:
        # aiortc asserts on a non-seekable file; say it in words instead.
        player.audio.stop()
        try:
            player = MediaPlayer(str(file_path), loop=True)
        except AssertionError:
            raise AudioError(f"audio file {str(path)!r} cannot be looped (not seekable)") from None
        except (av.FFmpegError, OSError, ValueError) as error:
            raise AudioError(f"cannot read audio file {str(path)!r}: {error}") from None
    track = player.audio
    assert track is not None
    return track


def capture_device_available() -> bool:
    """Whether this machine seems to have a microphone FFmpeg can open.

    PulseAudio/PipeWire (a ``pulse`` socket) is preferred; otherwise an ALSA PCM with a
    capture side (``/proc/asound/pcm``).
    """
    return _pulse_available() or _alsa_capture_available()


def _pulse_available() -> bool:
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return runtime is not None and Path(runtime, "pulse", "native").exists()


def _alsa_capture_available() -> bool:
    try:
        return "capture" in Path("/proc/asound/pcm").read_text()
    except OSError:
        return False


def open_microphone() -> MediaStreamTrack | None:
    """Open the default capture device as a track, or return None when there is none.

    Raises:
        AudioError: If a device seems present but FFmpeg cannot open it.
    """
    for available, device_format in ((_pulse_available, "pulse"), (_alsa_capture_available, "alsa")):
        if not available():
            continue
        try:
            player = MediaPlayer("default", format=device_format)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise AudioError(f"cannot open the {device_format} microphone: {error}") from None
        if player.audio is not None:
            return player.audio
    return None


def frame_to_mono(frame: av.AudioFrame, resampler: av.AudioResampler) -> np.ndarray:
    """Convert one decoded frame to mono 16-bit samples at :data:`SAMPLE_RATE`."""
    chunks = [chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(frame)]
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(chunks).astype(np.int16, copy=False)


def mono_resampler() -> av.AudioResampler:
    """A resampler to the recording format: signed 16-bit, mono, 48 kHz."""
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


class AudioTap(MediaStreamTrack):
    """A read-only copy of one member's audio, as an aiortc track.

    Frames are queued up to about one second; a listener slower than real time loses the
    oldest. The tap ends (``recv`` raises ``MediaStreamError``) when the member's track ends or
    :meth:`stop` is called.
    """

    kind = "audio"

    def __init__(self, owner: RemoteAudio) -> None:
        super().__init__()
        self._owner: RemoteAudio | None = owner
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue(_TAP_QUEUE_FRAMES)

    def _offer(self, frame: av.AudioFrame | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        """The next frame of the member's audio."""
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        """Stop listening; the member's audio keeps flowing to other taps."""
        super().stop()
        if self._owner is not None:
            self._owner._taps.discard(self)
            self._owner = None
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


class RemoteAudio:
    """Drains one member's received track and copies its frames to every tap."""

    def __init__(self) -> None:
        self._taps: set[AudioTap] = set()
        self._task: asyncio.Task[None] | None = None
        self._track: MediaStreamTrack | None = None
        self.first_frame_at: float | None = None
        """``time.monotonic()`` when the first frame arrived, or None."""
        self.frames_received = 0
        """How many frames arrived so far."""

    def tap(self) -> AudioTap:
        """A new track carrying this member's audio from now on."""
        tap = AudioTap(self)
        self._taps.add(tap)
        return tap

    def attach(
        self, track: MediaStreamTrack, on_first_frame: Callable[[], None] | None = None
    ) -> None:
        """Start draining `track` (the remote track aiortc gave us for this member).

        Args:
            track: The member's received audio track.
            on_first_frame: Called once, when the first frame arrives.
        """
        if self._track is track:
            return
        self.detach()  # a link made anew brings a new track: the taps carry on from it
        self._track = track
        self._task = asyncio.ensure_future(self._drain(track, on_first_frame))

    def detach(self) -> None:
        """Stop draining the current track (its link is being made anew) and keep the taps
        open for the next one."""
        self._track = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _drain(
        self, track: MediaStreamTrack, on_first_frame: Callable[[], None] | None
    ) -> None:
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                self.frames_received += 1
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                    if on_first_frame is not None:
                        on_first_frame()
                for tap in list(self._taps):
                    tap._offer(frame)
        except MediaStreamError:
            pass
        finally:
            if self._track is track:  # not a track replaced by a new link's
                self._end_taps()

    def _end_taps(self) -> None:
        for tap in list(self._taps):
            tap._offer(None)
        self._taps.clear()

    async def close(self) -> None:
        """Stop draining and end every tap."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._end_taps()


class WavRecorder:
    """Mixes any number of tracks into one mono 48 kHz 16-bit WAV file, in real time.

    A clock task writes the mix every 20 ms, a little behind real time (``latency``) so that
    network jitter does not punch holes in it; a source with nothing buffered contributes
    silence. The WAV header is rewritten on every write (Python's ``wave`` does it), so the file
    is valid even if the process dies before :meth:`stop`.

    Raises:
        AudioError: From the constructor, if the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike[str], *, latency: float = 0.1) -> None:
        self.path = Path(path)
        try:
            self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in stop()
        except OSError as error:
            raise AudioError(f"cannot write recording {str(path)!r}: {error.strerror}") from None
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self._latency = latency
        self._buffers: dict[object, np.ndarray] = {}
        self._readers: dict[object, asyncio.Task[None]] = {}
        self._clock: asyncio.Task[None] | None = None
        self._started_at: float | None = None
        self._written = 0
        self._closed = False

    @property
    def samples_written(self) -> int:
        """How many samples are in the file so far."""
        return self._written

    def add(self, key: object, track: MediaStreamTrack) -> None:
        """Mix `track` in from now on, under `key` (e.g. the member's peer id)."""
        if self._closed or key in self._readers:
            return
        self._buffers[key] = np.zeros(0, dtype=np.int16)
        self._readers[key] = asyncio.ensure_future(self._read(key, track))
        if self._clock is None:
            self._started_at = time.monotonic() + self._latency
            self._clock = asyncio.ensure_future(self._tick())

    def remove(self, key: object) -> None:
        """Stop mixing the track added under `key`; what it already sent is still written."""
        reader = self._readers.pop(key, None)
        if reader is not None:
            reader.cancel()

    async def _read(self, key: object, track: MediaStreamTrack) -> None:
        resampler = mono_resampler()
        max_buffered = SAMPLE_RATE // 2  # bound the delay a fast sender can build up
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                samples = frame_to_mono(frame, resampler)
                buffered = np.concatenate((self._buffers.get(key, samples[:0]), samples))
                self._buffers[key] = buffered[-max_buffered:]
        except MediaStreamError:
            pass

    async def _tick(self) -> None:
        assert self._started_at is not None
        while True:
            await asyncio.sleep(0.02)
            self._write_due()

    def _write_due(self) -> None:
        assert self._started_at is not None
        due = int((time.monotonic() - self._started_at) * SAMPLE_RATE) - self._written
        if due <= 0:
            return
        mix = np.zeros(due, dtype=np.int32)
        for key, buffered in list(self._buffers.items()):
            taken = buffered[:due]
            mix[: len(taken)] += taken
            self._buffers[key] = buffered[len(taken):]
            if key not in self._readers and len(self._buffers[key]) == 0:
                del self._buffers[key]
        self._wav.writeframes(np.clip(mix, -32768, 32767).astype("<i2").tobytes())
        self._written += due

    async def stop(self) -> None:
        """Stop all readers, write what is due, and close the file."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._readers.values(), *([self._clock] if self._clock else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._readers.clear()
        if self._started_at is not None:
            self._write_due()
        self._wav.close()
