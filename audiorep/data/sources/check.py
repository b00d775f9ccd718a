"""`check_audio`: the explicit pass that opens every record's audio file (readers never do) and lists the
files that cannot be used."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import soundfile as sf

from audiorep.audio.io import AudioError, load_audio
from audiorep.data.sources.common import DatasetError, Record


@dataclass
class AudioCheck:
    """Result of `check_audio`.

    Attributes:
      records: the records whose audio is readable (all of them unless skip_unreadable=True).
      unreadable: (path, reason) for each file that failed.
      durations: seconds of audio each readable record covers (window length for windowed records).
    """

    records: list[Record]
    unreadable: list[tuple[str, str]]
    durations: dict[str, float]

    @property
    def total_seconds(self) -> float:
        return float(sum(self.durations.values()))


def _probe_file(path: str, decode: bool) -> tuple[float, str | None]:
    """(seconds, None) for a usable file, (0.0, reason) otherwise."""
    try:
        if decode:
            wave, rate = load_audio(path)
            return wave.shape[-1] / rate, None
        info = sf.info(path)
        if info.frames <= 0:
            raise AudioError(f"{path} has 0 samples (empty or truncated file)")
        return info.frames / info.samplerate, None
    except (AudioError, sf.LibsndfileError, RuntimeError, OSError) as err:
        return 0.0, str(err).splitlines()[0] or type(err).__name__


def check_audio(
    records: Sequence[Record],
    skip_unreadable: bool = False,
    *,
    decode: bool = False,
    progress: bool = False,
    workers: int = 8,
) -> AudioCheck:
    """Open every record's audio file and list those that cannot be used.

    Args:
      records: from a reader.
      skip_unreadable: drop unreadable files (they stay listed in `unreadable`) instead of raising.
      decode: decode the whole file with `audiorep.audio.io.load_audio` (catches truncated data and
        NaNs; slow). Default: read the header only with soundfile.info (catches missing, non-audio and
        empty files, and windows past the end of the file).
      progress: show a progress bar.
      workers: threads opening files (libsndfile releases the GIL; helps most on network disks).

    Raises:
      DatasetError: listing the unreadable files, unless skip_unreadable.
    """
    paths = list(dict.fromkeys(r.path for r in records))  # unique, in order
    bar = None
    if progress:
        from tqdm.auto import tqdm  # only for a progress bar; importing it costs `audiorep --help` ~40 ms

        bar = tqdm(total=len(paths), desc="checking audio", unit="file")
    infos: dict[str, tuple[float, str | None]] = {}
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        for path, result in zip(paths, pool.map(lambda p: _probe_file(p, decode), paths, chunksize=64)):
            infos[path] = result
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    good, bad, durations = [], [], {}
    for r in records:
        seconds, error = infos[r.path]
        if error is None and (r.start_s >= seconds or (r.end_s is not None and r.end_s > seconds + 1e-3)):
            end = "end" if r.end_s is None else f"{r.end_s:g}"
            error = f"window {r.start_s:g}-{end} s is past the end of the file ({seconds:.3f} s)"
        if error is not None:
            bad.append((r.key, error))
            continue
        good.append(r)
        durations[r.key] = (seconds if r.end_s is None else r.end_s) - r.start_s
    if bad and not skip_unreadable:
        shown = "\n".join(f"  {p}: {why}" for p, why in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DatasetError(
            f"{len(bad)} of {len(records)} audio files are unreadable:\n{shown}{more}\n"
            "Re-extract or re-download them, or pass skip_unreadable=True (CLI: --skip-unreadable) to skip them."
        )
    return AudioCheck(good, bad, durations)
