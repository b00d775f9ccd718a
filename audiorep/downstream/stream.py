"""Streaming embeddings and detection scores: audio arriving in blocks -> one result per hop.

`Streamer` keeps only the samples the next window needs (at most one window plus one block), so memory and the
work per block stay bounded however long the stream runs. Every `hop_ms` a window of the last `window_ms` is
embedded as one clip through the Embedder's own jitted path (`Embedder.scene(window)`, one window per call, so the
numbers never depend on how the audio was cut into blocks), and scored by a trained head (downstream/heads.py) when
one is given. So streaming gives exactly the offline scene embeddings (and head scores) of the same windows.

Windows: window k covers input samples [k * hop, k * hop + window) at the input's rate (resampled to the model's
rate per window, as `scene(window, sample_rate=rate)` would); its result comes when its last sample has arrived,
at time_ms = (k * hop + window) / rate * 1000 (the window's end). A stream shorter than one window gives one result
for all of it when it ends; samples after the last whole window are not scored.

Readers: `file_blocks` (a sound file in blocks, optionally paced in real time) and `pcm_blocks` (raw s16le / f32le
PCM from a binary stream such as stdin, interleaved channels averaged).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from audiorep.audio.io import AudioError, check_sample_rate
from audiorep.errors import AudiorepError

PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


class StreamError(AudiorepError, ValueError):
    """A stream request that cannot be served (window or hop that holds no sample, ...)."""


class StreamStep(NamedTuple):
    """One hop's result: the window's end (ms from the stream's start), its embedding f32[D], and the head's
    score (float: the positive class's probability; f32[C] class probabilities for a head without a positive class;
    None without a head)."""

    time_ms: float
    embedding: np.ndarray
    score: float | np.ndarray | None


class Streamer:
    """Sliding windows over pushed blocks -> StreamSteps, in bounded memory.

    Args:
      embedder: an Embedder (downstream/embed.py).
      window_ms, hop_ms: the window's length and the spacing of results, in milliseconds (> 0).
      sample_rate: the blocks' rate (None: the model's).
      head: a heads.Head trained on this embedder's embeddings, or None.

    Raises:
      StreamError: a window or hop shorter than one sample.
      HeadError: a head trained on other embeddings.
    """

    def __init__(self, embedder, window_ms: float, hop_ms: float, *, sample_rate: int | None = None, head=None):
        self.embedder = embedder
        self.rate = embedder.sample_rate if sample_rate is None else check_sample_rate(sample_rate, "sample_rate")
        self.window = int(round(float(window_ms) * self.rate / 1000.0))
        self.hop = int(round(float(hop_ms) * self.rate / 1000.0))
        if not (np.isfinite(window_ms) and np.isfinite(hop_ms)) or self.window < 1 or self.hop < 1:
            raise StreamError(f"window {window_ms} ms and hop {hop_ms} ms must each hold at least one sample at "
                              f"{self.rate} Hz; pass --window-ms and --hop-ms > {1000 / self.rate:.3g}.")
        if head is not None:
            head.check_embedder(embedder)
        self.head = head
        self.buffer = np.zeros(0, np.float32)
        self.offset = 0  # input index of buffer[0]
        self.next_start = 0  # input index where the next window starts
        self.received = 0
        self.emitted = 0

    def _check(self, block) -> np.ndarray:
        x = np.asarray(block)
        if x.dtype.kind != "f":
            raise AudioError(f"stream block {self.received} samples have dtype {x.dtype}; pass float audio in [-1, 1]"
                             " (int16 PCM: divide by 32768, or use pcm_blocks).")
        if x.ndim != 1:
            raise AudioError(f"stream block has shape {x.shape}; pass mono blocks f32[n] (average channels first).")
        if not np.all(np.isfinite(x)):
            raise AudioError(f"stream block at sample {self.received} holds NaN/Inf samples.")
        return x.astype(np.float32, copy=False)

    def _step(self, window: np.ndarray, end: int) -> StreamStep:
        rate = None if self.rate == self.embedder.sample_rate else self.rate
        emb = self.embedder.scene(window, sample_rate=rate)
        score = None
        if self.head is not None:
            s = self.head.score(emb[None])[0]
            score = float(s) if np.ndim(s) == 0 else s
        self.emitted += 1
        return StreamStep(1000.0 * end / self.rate, emb, score)

    def warm_up(self) -> None:
        """Compile the window's forward pass (and the head's) before audio arrives, so the first blocks of a live
        stream do not wait for it. Changes no state."""
        emitted = self.emitted
        self._step(np.zeros(self.window, np.float32), self.window)
        self.emitted = emitted

    def push(self, block) -> list[StreamStep]:
        """Add a block f32[n] (any n >= 0) and return the results of every window it completes."""
        x = self._check(block)
        self.received += len(x)
        self.buffer = np.concatenate([self.buffer, x]) if len(self.buffer) else x.copy()
        out = []
        while self.next_start + self.window <= self.offset + len(self.buffer):
            a = self.next_start - self.offset
            out.append(self._step(self.buffer[a: a + self.window], self.next_start + self.window))
            self.next_start += self.hop
        drop = min(self.next_start - self.offset, len(self.buffer))  # samples no later window reads
        if drop > 0:
            self.buffer = self.buffer[drop:].copy()
            self.offset += drop
        return out

    def finish(self) -> list[StreamStep]:
        """End of the stream: a stream shorter than one window gets one result for all of it."""
        if self.emitted or self.received == 0:
            return []
        return [self._step(self.buffer[: self.received], self.received)]

    def run(self, blocks: Iterable) -> Iterator[StreamStep]:
        for block in blocks:
            yield from self.push(block)
        yield from self.finish()


def file_blocks(path, block_ms: float, *, realtime: bool = False) -> tuple[Iterator[np.ndarray], int]:
    """(blocks f32[n] of a sound file, mono, at its own rate; that rate). `realtime`: each block is released when
    the audio before it would have finished playing, as from a live source.

    Raises:
      AudioError: a file that does not exist or cannot be decoded.
    """
    import soundfile as sf  # the decoder: loaded when a file is streamed

    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises its own error types for unreadable files
        raise AudioError(f"{path}: cannot read it as audio ({err}); pass a WAV/FLAC/OGG file, or '-' for raw PCM on "
                         "stdin.") from err
    rate = int(info.samplerate)
    size = max(1, int(round(block_ms * rate / 1000.0)))

    def blocks():
        start = time.perf_counter()
        done = 0
        for block in sf.blocks(str(path), blocksize=size, dtype="float32", always_2d=True):
            if realtime:
                wait = start + (done + len(block)) / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)  # pacing a live source, not ordering
            done += len(block)
            yield block.mean(axis=1)

    return blocks(), rate


def pcm_blocks(stream, fmt: str, block_ms: float, rate: int, channels: int = 1) -> Iterator[np.ndarray]:
    """Blocks f32[n] (mono, in [-1, 1]) of raw interleaved PCM read from a binary stream (e.g. sys.stdin.buffer).
    A trailing partial frame at the end of the stream is dropped.

    Raises:
      StreamError: an unknown format or a channel count < 1.
    """
    if fmt not in PCM_FORMATS:
        raise StreamError(f"--format {fmt!r}: choose one of {', '.join(PCM_FORMATS)}.")
    if channels < 1:
        raise StreamError(f"--channels must be >= 1, got {channels}.")
    dtype = PCM_FORMATS[fmt]
    frame = dtype.itemsize * channels
    want = max(1, int(round(block_ms * rate / 1000.0))) * frame
    read = getattr(stream, "read1", stream.read)
    rest = b""
    while True:
        data = read(want)
        if not data:
            return
        data = rest + data
        usable = len(data) - len(data) % frame
        rest = data[usable:]
        if not usable:
            continue
        x = np.frombuffer(data[:usable], dtype).reshape(-1, channels).astype(np.float32)
        if dtype.kind == "i":
            x /= 32768.0
        yield x.mean(axis=1)


__all__ = ["PCM_FORMATS", "StreamError", "StreamStep", "Streamer", "file_blocks", "pcm_blocks"]
