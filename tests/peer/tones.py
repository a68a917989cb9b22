"""Tone helpers for the Python peer's tests: make sine WAVs, find frequencies in what was heard.

Every peer in a test sends its own frequency; a receiver proves it hears that peer by finding
that frequency, not merely "some audio".
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from xes.peer.audio import SAMPLE_RATE, frame_to_mono, mono_resampler

__all__ = ["write_tone", "read_wav", "tone_share", "wait_for_tone"]


def write_tone(directory: Path, frequency: float, seconds: float = 10.0) -> Path:
    """A 48 kHz mono 16-bit sine WAV at half scale (made with numpy: no external tool)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tone{frequency:g}.wav"
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.5 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(mono float samples, sample rate) of a 16-bit WAV; channels are averaged."""
    with wave.open(str(path), "rb") as wav:
        channels, rate = wav.getnchannels(), wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    return raw.reshape(-1, channels).mean(axis=1), rate


def tone_share(samples: np.ndarray, rate: int, frequency: float, skip: float = 0.5) -> float:
    """Share of the signal's energy within ±15 Hz of `frequency` (0..1), after `skip` seconds.

    A clean received tone scores above 0.9; two equal tones mixed score about 0.5 each.
    """
    body = samples[int(skip * rate):]
    if len(body) < rate // 10:
        return 0.0
    power = np.abs(np.fft.rfft(body * np.hanning(len(body)))) ** 2
    freqs = np.fft.rfftfreq(len(body), 1 / rate)
    total = power[freqs > 50].sum()
    return float(power[np.abs(freqs - frequency) <= 15].sum() / total) if total > 0 else 0.0


async def wait_for_tone(
    track: MediaStreamTrack, frequency: float, timeout: float = 20.0, hits_needed: int = 3
) -> float:
    """Read `track` until `frequency` dominates `hits_needed` windows in a row.

    Returns:
        ``time.monotonic()`` at the end of the first window of that run: the moment the tone
        was first heard.

    Raises:
        TimeoutError: If the tone was not heard within `timeout` seconds.
    """
    window = 4096  # 85 ms at 48 kHz: 11.7 Hz bins, enough to tell test tones apart
    resampler = mono_resampler()
    buffered = np.zeros(0, dtype=np.float64)
    first_hit: float | None = None
    hits = 0
    async with asyncio.timeout(timeout):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                raise TimeoutError("the track ended before the tone was heard") from None
            if not isinstance(frame, av.AudioFrame):
                continue
            buffered = np.concatenate((buffered, frame_to_mono(frame, resampler)))
            while len(buffered) >= window:
                chunk, buffered = buffered[:window], buffered[window // 2:]
                if _dominant(chunk) is not None and abs(_dominant(chunk) - frequency) <= 24:
                    hits += 1
                    first_hit = first_hit or time.monotonic()
                    if hits >= hits_needed:
                        return first_hit
                else:
                    hits, first_hit = 0, None


def _dominant(chunk: np.ndarray) -> float | None:
    if np.abs(chunk).max() < 300:  # about -40 dBFS: silence, not a tone
        return None
    power = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk)))) ** 2
    freqs = np.fft.rfftfreq(len(chunk), 1 / SAMPLE_RATE)
    power[freqs < 50] = 0
    return float(freqs[int(power.argmax())])
