"""Reading audio from disk: any file soundfile reads -> mono float32 in [-1, 1] at a target rate.

Everything above this module (datasets, embedding export, the CLI) gets audio through
`load_audio` / `resample` / `pad_batch`, so bad input is caught here once, with an `AudioError`
that names the file and says what to do about it.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiorep.errors import AudiorepError
from audiorep.paths import write_atomically

# Rates outside this range are almost certainly a mistake (a frame count passed as a rate, ...).
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000


class AudioError(AudiorepError, ValueError):
    """Audio that cannot be used: missing, unreadable, empty, non-finite, or at an absurd rate."""


class TruncatedAudioWarning(UserWarning):
    """A file holds less audio than its header declares (a wav cut mid-data): it is read as the shorter clip.

    Make it an error with `warnings.simplefilter("error", TruncatedAudioWarning)` (or
    `python -W error::audiorep.audio.io.TruncatedAudioWarning`).
    """


# WAVE format tags whose block align is the size of one frame (all channels of one sample time), so the data
# chunk's size says how many frames the file should hold: PCM, IEEE float, A-law, mu-law, and EXTENSIBLE
# around one of them. Compressed tags (ADPCM, GSM, MPEG, ...) pack many frames into a block.
_FRAME_ALIGNED_WAVE_TAGS = (0x0001, 0x0003, 0x0006, 0x0007)
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what streaming writers put in a size field they could not fill in


def wav_declared_frames(path: str | os.PathLike) -> int | None:
    """The number of frames a WAV (RIFF or RF64) header declares in its data chunk, read without decoding.

    None when the file is not a WAV, its samples are compressed (the chunk size does not count frames), or the
    writer left the size unknown (a stream written to a pipe). libsndfile reads a wav cut mid-data as a shorter
    file without complaint; comparing this number with the frames it returns tells the two apart.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return None
        block_align = data64 = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                    size = data64
                if not block_align or size is None or size in _UNKNOWN_SIZES:
                    return None
                return size // block_align
            body = f.read(min(size, 40)) if cid in (b"fmt ", b"ds64") else b""
            if cid == b"fmt " and len(body) >= 16:
                tag, align = struct.unpack("<H", body[:2])[0], struct.unpack("<H", body[12:14])[0]
                if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the SubFormat GUID
                block_align = align if tag in _FRAME_ALIGNED_WAVE_TAGS else None
            elif cid == b"ds64" and len(body) >= 16:
                data64 = struct.unpack("<Q", body[8:16])[0]
            f.seek(size - len(body) + (size & 1), os.SEEK_CUR)  # chunks are padded to an even size


def warn_if_truncated(path: str | os.PathLike, frames: int, sample_rate: int) -> bool:
    """Warn (TruncatedAudioWarning) when a WAV holds fewer than the `frames` its header declares.

    Args:
      path: the file.
      frames: the frames actually read (or soundfile.info(path).frames, which counts what is present).
      sample_rate: the file's rate, to say both lengths in seconds.

    Returns:
      True when it warned.
    """
    declared = wav_declared_frames(path)
    if declared is None or frames >= declared:
        return False
    warnings.warn(
        f"{path} is truncated: its header declares {declared} frames ({declared / sample_rate:.3f} s) but the file "
        f"holds {frames} ({frames / sample_rate:.3f} s); it is read as the shorter clip. Re-download or re-extract "
        "it to get the whole recording.",
        TruncatedAudioWarning,
        stacklevel=3,
    )
    return True


def check_sample_rate(sample_rate, what: str = "sample rate") -> int:
    """Validate a sample rate given by a user or read from a file header; return it as an int."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise AudioError(
            f"{what} must be a number of samples per second (e.g. 16000), got {sample_rate!r} "
            f"of type {type(sample_rate).__name__}."
        )
    if not np.isfinite(sample_rate) or float(sample_rate) != int(sample_rate):
        raise AudioError(f"{what} must be a whole number of Hz, got {sample_rate!r}.")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{what} {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; "
            "pass the rate in Hz (16000, not 16 or 16e6)."
        )
    return rate


def check_samples(samples: np.ndarray, source: str = "audio") -> np.ndarray:
    """Reject empty and non-finite audio. `source` names the file or clip in the message."""
    if samples.size == 0 or samples.shape[-1] == 0:
        raise AudioError(
            f"{source} has 0 samples (empty or truncated file). Re-extract or re-record it, "
            "or skip it (datasets: --skip-unreadable)."
        )
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - finite.sum())
        raise AudioError(
            f"{source} contains {bad} NaN/Inf sample(s) (of {samples.size}). "
            "The file is corrupt or was written from a diverged model; regenerate it, "
            "or clean it with np.nan_to_num before passing it in."
        )
    return samples


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr (VHQ). f32[..., n] -> f32[..., round(n * target / orig)]."""
    orig_rate = check_sample_rate(orig_rate, "original sample rate")
    target_rate = check_sample_rate(target_rate, "target sample rate")
    samples = np.asarray(samples, dtype=np.float32)
    if orig_rate == target_rate:
        return samples
    if samples.ndim == 1:
        return soxr.resample(samples, orig_rate, target_rate, quality="VHQ").astype(np.float32)
    flat = samples.reshape(-1, samples.shape[-1])
    # soxr takes (frames, channels): resample every leading row as one channel in one call.
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_rate, target_rate, quality="VHQ").T
    return np.ascontiguousarray(out, dtype=np.float32).reshape(*samples.shape[:-1], -1)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
) -> tuple[np.ndarray, int]:
    """Read an audio file.

    Args:
      path: any format libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, aiff, ...).
      sample_rate: resample to this rate (soxr); None keeps the file's rate.
      mono: average the channels.

    Returns:
      (samples, rate): f32[n] when mono, else f32[channels, n]; values in [-1, 1].

    Raises:
      AudioError: naming the file, for a missing file, a file that is not audio or is truncated,
        zero samples, NaN/Inf samples, or an absurd sample rate.

    Warns:
      TruncatedAudioWarning: a wav that holds fewer frames than its header declares (cut mid-data); the frames
        present are returned.
    """
    path = Path(path)
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate, "requested sample rate")
    if not path.exists():
        raise AudioError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file; pass the files inside it.")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        size = path.stat().st_size
        hint = "the file is empty" if size == 0 else f"{size} bytes, not a readable audio stream"
        raise AudioError(
            f"{path}: cannot decode audio ({hint}; libsndfile says: {err}). The file is truncated or not "
            "audio; re-download it, or convert it to wav/flac (e.g. `ffmpeg -i IN OUT.flac`)."
        ) from err
    rate = check_sample_rate(rate, f"{path}: sample rate in the file header")
    warn_if_truncated(path, data.shape[0], rate)
    samples = data.T  # (channels, n)
    check_samples(samples, str(path))
    if mono:
        samples = samples.mean(axis=0)
    if sample_rate is not None and sample_rate != rate:
        samples = resample(samples, rate, sample_rate)
        rate = sample_rate
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False), rate


def save_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write f32[n] or f32[channels, n] atomically (temp file + rename); format from the suffix."""
    path = Path(path)
    rate = check_sample_rate(sample_rate)
    samples = np.asarray(samples, dtype=np.float32)
    data = samples if samples.ndim == 1 else samples.T
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {"OPUS": "OGG", "": "WAV"}.get(path.suffix.lstrip(".").upper(), path.suffix.lstrip(".").upper())
    write_atomically(path, lambda fh: sf.write(fh, np.clip(data, -1.0, 1.0), rate, subtype=subtype, format=fmt))


def pad_batch(
    clips: Sequence[np.ndarray],
    length: int | None = None,
    pad_to_multiple: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack clips of different lengths into one array.

    Args:
      clips: f32[n_i] each.
      length: crop/pad every clip to this many samples; None pads to the longest clip.
      pad_to_multiple: round the padded length up to a multiple of this (fewer jit shapes).

    Returns:
      (batch f32[B, L], mask bool[B, L]): zero padding at the end; mask is True on real samples.
    """
    if len(clips) == 0:
        raise AudioError("pad_batch got an empty list of clips; pass at least one clip.")
    clips = [np.asarray(c, dtype=np.float32) for c in clips]
    for i, c in enumerate(clips):
        if c.ndim != 1:
            raise AudioError(f"clip {i} has shape {c.shape}; pad_batch takes mono f32[n] clips.")
    target = max(c.shape[0] for c in clips) if length is None else int(length)
    if target <= 0:
        raise AudioError(f"pad_batch length must be positive, got {target}.")
    target = -(-target // pad_to_multiple) * pad_to_multiple
    batch = np.zeros((len(clips), target), np.float32)
    mask = np.zeros((len(clips), target), bool)
    for i, c in enumerate(clips):
        n = min(c.shape[0], target)
        batch[i, :n] = c[:n]
        mask[i, :n] = True
    return batch, mask
