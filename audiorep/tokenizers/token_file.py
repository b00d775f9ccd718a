"""Acoustic tokens of a set of audio files, and the .npz file that holds them (`audiorep tokens extract` writes it,
`audiorep tokens bpe` reads it).

A labeler turns audio into codes: `labels_from_audio(audio f32[B, samples]) -> i32[B, N]` (time-major tokens, as
BEATs' tokenizers give them), with `sample_rate`, `codebook_size`, `tokens_per_step` (tokens per time step: the
frequency patches), `num_tokens(samples)`, `context_free` (a clip's codes do not change when it is end-padded) and
`description`. `RandomProjectionLabeler` is BEATs' iteration-1 tokenizer as a labeler: the 'beats' fbank cut into
the BEATs encoder's 16x16 patches, coded by the frozen random projection (tokenizers/random_projection.py); it
needs no checkpoint, so token extraction works out of the box. `TokenizerDirLabeler` wraps a tokenizer directory
(tokenizers/tokenizer_dir.py: a converted official or a distilled tokenizer).

The token file (.npz; np.load(path, allow_pickle=False) reads it):
  format            str  'audiorep-tokens'; format_version int64 (1)
  codes             i32[sum T_i]  every clip's codes, concatenated (time-major within a clip)
  offsets           i64[N + 1]    clip i is codes[offsets[i]:offsets[i + 1]]
  files             <U[N]         clip names (relative to the inputs' common folder, sorted)
  durations_s       f64[N]        seconds of audio per clip
  codebook_size     int64         K: codes lie in [0, K)
  tokens_per_second f64           sum T_i / sum durations_s (the figure BPE shortens)
  tokens_per_step   int64         tokens per time step (8 for BEATs' 16x16 patches of 128 mel bins)
  tokenizer         str           what made the codes (e.g. 'random-projection:codes=1024,seed=0,dim=16')
  sample_rate       int64         the rate the audio was read at
  failed_files      <U[M], failed_errors <U[M]: files that gave no tokens, and why
  audiorep_version  str
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from audiorep import __version__
from audiorep.audio.frontends import get_frontend
from audiorep.audio.io import load_audio
from audiorep.errors import AudiorepError
from audiorep.paths import output_file_problem, write_atomically
from audiorep.tokenizers.random_projection import RandomProjectionTokenizer
from audiorep.tokenizers.tokenizer_dir import TokenizerBundle, load_tokenizer_dir

TOKEN_FORMAT = "audiorep-tokens"
TOKEN_FORMAT_VERSION = 1
RANDOM_PROJECTION = "random-projection"
"""The --tokenizer spec of `RandomProjectionLabeler` (options: codes, seed, dim)."""


class TokenError(AudiorepError, ValueError):
    """A token file, tokenizer spec or extraction input that cannot work: the message names the problem and the fix."""


# --------------------------------------------------------------------------------------------- the file
@dataclasses.dataclass
class TokenFile:
    """Codes of N clips: clip i is codes[offsets[i]:offsets[i + 1]] (see the module docstring for the fields)."""

    codes: np.ndarray
    offsets: np.ndarray
    files: list[str]
    durations_s: np.ndarray
    codebook_size: int
    tokenizer: str
    sample_rate: int
    tokens_per_step: int = 1
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def clip(self, i: int) -> np.ndarray:
        """Codes of clip i.  -> i32[T_i]."""
        return self.codes[self.offsets[i]: self.offsets[i + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Every clip's codes, in file order.  -> [i32[T_i]]."""
        return [self.clip(i) for i in range(len(self))]

    @property
    def seconds(self) -> float:
        """Seconds of audio the codes cover."""
        return float(np.sum(self.durations_s))

    @property
    def tokens_per_second(self) -> float:
        return float(self.codes.size / self.seconds) if self.seconds > 0 else 0.0


def check_token_output(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before any work, that `out` can take a new token file (a .npz name, not a folder, not an existing file
    unless `overwrite`, under a folder that can be written). Returns it as a Path, else TokenError."""
    out = Path(out)
    if out.suffix != ".npz" and not out.is_dir():
        raise TokenError(f"--out {out}: a token file is a NumPy archive; give it a .npz name (e.g. {out.stem}.npz).")
    problem = output_file_problem(out, flag="--out", example="tokens.npz", overwrite=overwrite, kind=".npz file")
    if problem:
        raise TokenError(f"{problem}.")
    return out


def _unicode(items: Sequence[str]) -> np.ndarray:
    """A fixed-width unicode array (np.load reads it without pickle)."""
    return np.array(list(items), dtype=f"<U{max([1, *(len(s) for s in items)])}")


def save_tokens(path: str | os.PathLike, tokens: TokenFile, *, overwrite: bool = False) -> Path:
    """Write a token file atomically (temp file + rename); an existing one is replaced only with `overwrite`."""
    path = check_token_output(path, overwrite=overwrite)
    arrays = {
        "format": np.array(TOKEN_FORMAT), "format_version": np.array(TOKEN_FORMAT_VERSION, np.int64),
        "codes": np.asarray(tokens.codes, np.int32), "offsets": np.asarray(tokens.offsets, np.int64),
        "files": _unicode(tokens.files), "durations_s": np.asarray(tokens.durations_s, np.float64),
        "codebook_size": np.array(tokens.codebook_size, np.int64),
        "tokens_per_second": np.array(tokens.tokens_per_second, np.float64),
        "tokens_per_step": np.array(tokens.tokens_per_step, np.int64), "tokenizer": np.array(tokens.tokenizer),
        "sample_rate": np.array(tokens.sample_rate, np.int64),
        "failed_files": _unicode([f for f, _ in tokens.failed]),
        "failed_errors": _unicode([e for _, e in tokens.failed]),
        "audiorep_version": np.array(__version__),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda fh: np.savez(fh, **arrays))
    return path


def load_tokens(path: str | os.PathLike) -> TokenFile:
    """Read a token file written by `save_tokens`; anything else is refused with TokenError naming the problem."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise TokenError(f"{path} {what}; give the .npz file `audiorep tokens extract --out` wrote.")
    if not zipfile.is_zipfile(path):
        raise TokenError(f"{path} is not a token file (not a NumPy .npz archive); give the file "
                         f"`audiorep tokens extract` wrote.")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # damaged members, or pickled (object) arrays
        raise TokenError(f"{path} is not a token file (a .npz whose arrays cannot be read without pickle); give "
                         f"the file `audiorep tokens extract` wrote.") from None
    if str(data.get("format", "")) != TOKEN_FORMAT:
        raise TokenError(f"{path} is a .npz but not a token file (no format={TOKEN_FORMAT!r}; an embeddings file?); "
                         f"make one with `audiorep tokens extract`.")
    missing = [k for k in ("format_version", "codes", "offsets", "files", "durations_s", "codebook_size",
                           "tokenizer", "sample_rate", "tokens_per_step", "failed_files", "failed_errors")
               if k not in data]
    if missing:
        raise TokenError(f"{path}: a token file without {', '.join(missing)} (damaged); extract the tokens again.")
    if int(data["format_version"]) > TOKEN_FORMAT_VERSION:
        raise TokenError(f"{path} is a token file of format version {int(data['format_version'])}, newer than this "
                         f"audiorep reads ({TOKEN_FORMAT_VERSION}); upgrade audiorep.")
    codes, offsets, files = data["codes"], data["offsets"], [str(f) for f in data["files"]]
    k = int(data["codebook_size"])
    if (offsets.ndim != 1 or offsets.size != len(files) + 1 or offsets[0] != 0 or offsets[-1] != codes.size
            or np.any(np.diff(offsets) < 0) or (codes.size and (codes.min() < 0 or codes.max() >= k))):
        raise TokenError(f"{path}: its codes, offsets and files disagree (a damaged file); extract the tokens again.")
    failed = list(zip([str(f) for f in data["failed_files"]], [str(e) for e in data["failed_errors"]]))
    return TokenFile(codes.astype(np.int32), offsets.astype(np.int64), files, data["durations_s"].astype(np.float64),
                     k, str(data["tokenizer"]), int(data["sample_rate"]), int(data["tokens_per_step"]), failed)


# --------------------------------------------------------------------------------------------- labelers
@dataclasses.dataclass(frozen=True)
class RandomProjectionLabeler:
    """BEATs' iteration-1 labels of audio: 'beats' fbank -> 16x16 patches (time-major) -> random-projection codes.

    audio f32[B, samples] at 16 kHz -> i32[B, T * F] with F = 128 // 16 = 8 frequency patches per time step and
    T = frames // 16 (frames past the last whole patch are dropped, as the BEATs patch conv drops them).
    Each patch is coded alone and each fbank frame depends on its own samples only, so the codes of a clip do not
    change when it is end-padded in a batch (`context_free`): `num_tokens` says how many are its own.
    """

    codebook_size: int = 1024
    seed: int = 0
    code_dim: int = 16
    patch: int = 16
    context_free = True

    @functools.cached_property
    def frontend(self):
        return get_frontend("beats")

    @functools.cached_property
    def tokenizer(self) -> RandomProjectionTokenizer:
        return RandomProjectionTokenizer(in_dim=self.patch * self.patch, codebook_size=self.codebook_size,
                                         code_dim=self.code_dim, seed=self.seed)

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def tokens_per_step(self) -> int:
        return self.frontend.num_mel_bins // self.patch

    @property
    def description(self) -> str:
        return f"{RANDOM_PROJECTION}:codes={self.codebook_size},seed={self.seed},dim={self.code_dim}"

    def num_tokens(self, samples: int) -> int:
        """Codes of a clip of `samples` samples (0 when it is shorter than one patch of frames)."""
        return self.frontend.num_frames(int(samples)) // self.patch * self.tokens_per_step

    @functools.cached_property
    def _labels(self):
        p = self.patch

        def labels(audio):
            feats = self.frontend(audio)  # [B, frames, mels]
            b, frames, mels = feats.shape
            t, f = frames // p, mels // p
            x = feats[:, : t * p, : f * p].reshape(b, t, p, f, p).transpose(0, 1, 3, 2, 4).reshape(b, t * f, p * p)
            return self.tokenizer(x)

        return jax.jit(labels)

    def labels_from_audio(self, audio) -> jax.Array:
        """f32[B, samples] -> i32[B, T * F] (time-major: token n is time patch n // F, frequency patch n % F)."""
        return self._labels(jnp.asarray(audio, jnp.float32))


def parse_random_projection(spec: str) -> RandomProjectionLabeler:
    """'random-projection' or 'random-projection:codes=1024,seed=0,dim=16' -> its labeler (TokenError if malformed)."""
    _, _, opts = spec.partition(":")
    keys = {"codes": "codebook_size", "seed": "seed", "dim": "code_dim"}
    kwargs = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in keys:
            raise TokenError(f"--tokenizer {spec!r}: options are {', '.join(f'{k}=N' for k in keys)} "
                             f"(e.g. {RANDOM_PROJECTION}:codes=1024,seed=0).")
        try:
            kwargs[keys[key.strip()]] = int(value)
        except ValueError:
            raise TokenError(f"--tokenizer {spec!r}: {key.strip()}={value!r} is not a whole number.") from None
    if kwargs.get("codebook_size", 2) < 2 or kwargs.get("code_dim", 1) < 1 or kwargs.get("seed", 0) < 0:
        raise TokenError(f"--tokenizer {spec!r}: codes must be >= 2, dim >= 1 and seed >= 0.")
    return RandomProjectionLabeler(**kwargs)


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizerDirLabeler:
    """A tokenizer directory (tokenizers/tokenizer_dir.py) as a labeler: its frontend, then its tokenizer (official
    `extract_labels`). Its codes depend on the whole clip (a Transformer), so clips are batched by equal length."""

    bundle: TokenizerBundle
    context_free = False

    @property
    def sample_rate(self) -> int:
        return self.bundle.sample_rate

    @property
    def codebook_size(self) -> int:
        return self.bundle.codebook_size

    @property
    def tokens_per_step(self) -> int:
        return self.bundle.config.num_mel_bins // self.bundle.config.input_patch_size

    @property
    def description(self) -> str:
        return f"{self.bundle.path} (sha256 {self.bundle.digest[:12]})"

    def num_tokens(self, samples: int) -> int:
        """Codes of a clip of `samples` samples (0 when it is shorter than one patch of frames)."""
        return self.bundle.frontend.num_frames(int(samples)) // self.bundle.config.input_patch_size \
            * self.tokens_per_step

    def labels_from_audio(self, audio) -> jax.Array:
        """f32[B, samples] -> i32[B, N], time-major."""
        return self.bundle.labels_from_audio(audio)


def load_labeler(spec: str):
    """A --tokenizer spec -> its labeler: 'random-projection[:codes=K,seed=S,dim=D]' or a tokenizer directory."""
    if spec.partition(":")[0].strip() == RANDOM_PROJECTION:
        return parse_random_projection(spec)
    path = Path(spec)
    if not path.exists():
        raise TokenError(f"--tokenizer {spec}: no such tokenizer directory; give one written by `audiorep convert "
                         f"beats-tokenizer`, or {RANDOM_PROJECTION}[:codes=1024,seed=0] for BEATs' iteration-1 codes.")
    return TokenizerDirLabeler(load_tokenizer_dir(path))


# --------------------------------------------------------------------------------------------- extraction
def _probe_samples(path: Path, rate: int) -> int:
    """Length at `rate` from the header (0 when it cannot be read: the load then names the reason)."""
    import soundfile as sf  # libsndfile's header reader; audio/io.py loads it as well

    try:
        info = sf.info(str(path))
        return int(info.frames * rate / max(1, info.samplerate))
    except Exception:  # any unreadable header; load_audio words the reason when the file is loaded
        return 0


def _batches(lengths: list[int], batch_size: int, same_length: bool) -> list[list[int]]:
    """Indices grouped into batches of <= batch_size, by length (equal lengths only when `same_length`)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (not same_length or lengths[batches[-1][0]] == lengths[i]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def extract_tokens(labeler, files: Sequence[str | os.PathLike], *, names: Sequence[str] | None = None,
                   batch_size: int = 16, progress: bool = False) -> TokenFile:
    """Codes of every audio file, read at the labeler's rate (mono), batched by length.

    A labeler whose codes do not depend on padding (`context_free`) gets batches of similar lengths, end-padded to
    a whole second, and each clip keeps its own `num_tokens`; any other gets batches of equal lengths only, so a
    clip's codes never depend on its neighbours. Unreadable files and clips shorter than one token are listed in
    `failed` (when none gives tokens: TokenError).

    names: what the file records call the clips (default: the paths as given); files are stored sorted by name.
    """
    from tqdm.auto import tqdm  # imported on use, as every progress bar in audiorep

    files = [Path(f) for f in files]
    names = [str(f) for f in files] if names is None else list(names)
    if not files:
        raise TokenError("no audio files to extract tokens from; give a folder that holds audio.")
    rate = int(labeler.sample_rate)
    context_free = bool(getattr(labeler, "context_free", False))
    lengths = [_probe_samples(f, rate) for f in files]
    codes: dict[int, np.ndarray] = {}
    durations: dict[int, float] = {}
    failed: list[tuple[str, str]] = []
    bar = tqdm(total=len(files), desc=f"tokens {labeler.description}", unit="file", disable=not progress)
    for batch in _batches(lengths, int(batch_size), same_length=not context_free):
        clips = []
        for i in batch:
            try:
                clips.append((i, load_audio(files[i], sample_rate=rate)[0]))
            except AudiorepError as err:
                failed.append((names[i], str(err)))
        if not context_free:  # the header's length can be off by a resampling rounding: regroup by the real one
            groups: dict[int, list] = {}
            for i, wave in clips:
                groups.setdefault(wave.size, []).append((i, wave))
            runs = list(groups.values())
        else:
            runs = [clips] if clips else []
        for run in runs:
            _label_run(labeler, run, rate, context_free, names, codes, durations, failed)
        bar.update(len(batch))
    bar.close()
    if not codes:
        reasons = "; ".join(err.rstrip(". ") for _, err in sorted(failed)[:3])
        raise TokenError(f"none of the {len(files)} audio file(s) gave tokens: {reasons}.")
    order = sorted(codes, key=lambda i: names[i])
    lengths_out = np.array([codes[i].size for i in order], np.int64)
    return TokenFile(codes=np.concatenate([codes[i] for i in order]).astype(np.int32),
                     offsets=np.concatenate([[0], np.cumsum(lengths_out)]).astype(np.int64),
                     files=[names[i] for i in order], durations_s=np.array([durations[i] for i in order]),
                     codebook_size=int(labeler.codebook_size), tokenizer=str(labeler.description), sample_rate=rate,
                     tokens_per_step=int(getattr(labeler, "tokens_per_step", 1)), failed=sorted(failed))


def _label_run(labeler, run, rate, context_free, names, codes, durations, failed) -> None:
    """Label one batch of (index, wave) and store each clip's codes (or why it has none)."""
    keep = []
    for i, wave in run:
        if labeler.num_tokens(wave.size):
            keep.append((i, wave))
        else:
            failed.append((names[i], f"{wave.size / rate:.3f} s is shorter than one token; the tokenizer needs "
                                     f"longer clips"))
    run = keep
    if not run:
        return
    # context-free: end-padded to a whole second (few distinct shapes to compile); else all of one length
    width = -(-max(w.size for _, w in run) // rate) * rate if context_free else run[0][1].size
    batch = np.zeros((len(run), width), np.float32)
    for row, (_, wave) in enumerate(run):
        batch[row, : wave.size] = wave
    try:
        labels = np.asarray(labeler.labels_from_audio(batch))
    except AudiorepError as err:  # e.g. a clip shorter than the frontend's window: every clip of the run says why
        failed.extend((names[i], str(err)) for i, _ in run)
        return
    for row, (i, wave) in enumerate(run):
        n = labeler.num_tokens(wave.size)
        if n != labels.shape[1] and not context_free:
            raise TokenError(f"the tokenizer gave {labels.shape[1]} codes for a clip of {wave.size} samples where its "
                             f"geometry says {n}; the tokenizer directory does not match its config, re-export it.")
        codes[i] = labels[row, :n].astype(np.int32)
        durations[i] = wave.size / rate


__all__ = ["RANDOM_PROJECTION", "TOKEN_FORMAT", "TOKEN_FORMAT_VERSION", "RandomProjectionLabeler", "TokenError",
           "TokenFile", "TokenizerDirLabeler", "check_token_output", "extract_tokens", "load_labeler", "load_tokens",
           "parse_random_projection", "save_tokens"]
