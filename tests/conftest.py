"""Shared fixtures: the shared real-audio folder, generated clips, absl flags for grain workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# `audiorep` commands run by tests keep no compile cache in the user's home (tests/test_frontends_cli.py checks it)
os.environ["AUDIOREP_XLA_CACHE"] = "off"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FSDD = SHARED / "data" / "fsdd" / "recordings"


def pytest_configure(config):
    # grain's multiprocessing workers read absl flags; they must be marked parsed first.
    try:
        from absl import flags

        flags.FLAGS.mark_as_parsed()
    except Exception:  # absl missing: grain is not used in that run
        pass


@pytest.fixture
def fsdd_dir() -> Path:
    """../shared/data/fsdd/recordings (real 8 kHz spoken digits); skips cleanly when absent."""
    if not FSDD.is_dir():
        pytest.skip(f"shared real-audio data not found at {FSDD}")
    return FSDD


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tone(freq: float = 440.0, seconds: float = 1.0, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    """A sine tone, f32[seconds * rate]."""
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tiny_fsdd(root):
    """Six speakers x three digits x two takes of 0.5 s tones at 8 kHz, in FSDD's file naming."""
    rec = root / "recordings"
    rec.mkdir(parents=True)
    for spk in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler"):
        for digit in range(3):
            for k in range(2):
                sf.write(rec / f"{digit}_{spk}_{k}.wav", tone(300.0 + 300 * digit, 0.5, 8000), 8000)
    return root


def fixture_fbank(batch: int = 2, frames: int = 165, mels: int = 128) -> np.ndarray:
    """Deterministic pseudo-fbank f32[batch, frames, mels]: the formula of tests/fixtures/make_beats_fixture.py
    (the input of the torch reference runs of the BEATs encoder and tokenizer fixtures)."""
    t = np.arange(frames)[None, :, None]
    f = np.arange(mels)[None, None, :]
    b = np.arange(batch)[:, None, None]
    return (np.sin(0.37 * t + 0.11 * f * (b + 1)) + 0.5 * np.cos(0.05 * t * f / 7.0 + b) - 0.2).astype(np.float32)
