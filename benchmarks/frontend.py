r"""Frontend throughput: audiorep's JAX frontends against their baselines, measured in the same run.

    .venv/bin/python benchmarks/frontend.py            # full run (about a minute on 2 CPU cores)
    .venv/bin/python benchmarks/frontend.py --quick    # fewer repeats

1. Kaldi fbank, 10 s clips at 16 kHz: `KaldiFbank(BEATS_FBANK)` batched (32 clips, jit, after warm-up)
   vs kaldi-native-fbank (C++) one clip at a time, as a per-clip data loader would call it.
   kaldi-native-fbank refuses 128 bins at 16 kHz (empty bins), so it runs with 80; JAX is timed at
   80 bins too for the like-for-like ratio, and at the BEATs preset's 128.
2. PaSST mel, 10 s clips at 32 kHz, batch 16: `PasstMel` vs a vectorised numpy implementation of the
   same recipe and, when $AUDIOREP_TORCH_PYTHON names a Python with torch, the official torch recipe
   (kkoutini/PaSST AugmentMelSTFT in eval mode) run in a subprocess with the same batch.
Targets the frontends were written to (2026-11-25, 2-core CPU): JAX fbank >= 258 clips/s (torchaudio's
per-clip rate there) and >= 4x kaldi-native-fbank; PasstMel above the official frontend's ~77 clips/s.
Medians of `--repeats` runs.
Besides wall-clock rates, clips per CPU-second (all threads of the process) are printed: on a machine
shared with other jobs they stay comparable when wall-clock rates do not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch_baseline
from timing import median_seconds

NAN = float("nan")


def rates(clips: int, times: tuple[float, float]) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second)."""
    return clips / times[0], clips / times[1]


def clips(batch: int, seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((batch, int(seconds * rate)))).astype(np.float32)


# --------------------------------------------------------------------------------------- Kaldi fbank
def bench_fbank(args) -> list[tuple[str, float, float]]:
    import jax
    import kaldi_native_fbank as knf

    from audiorep.audio.frontends import BEATS_FBANK, KaldiFbank

    x = clips(args.batch, args.seconds, 16000)
    rows = []
    for bins in (128, 80):
        fe = KaldiFbank(BEATS_FBANK.replace(num_mel_bins=bins))
        xd = jax.device_put(x)
        fe(xd).block_until_ready()  # compile + warm-up
        t = median_seconds(lambda fe=fe, xd=xd: fe(xd).block_until_ready(), args.repeats)
        rows.append((f"JAX KaldiFbank, BEATs options, {bins} bins (batch {args.batch}, jit)", *rates(args.batch, t)))

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80

    def knf_all():
        for clip in x[: args.knf_clips]:
            fb = knf.OnlineFbank(opts)
            fb.accept_waveform(16000, (clip * 32768.0).tolist())
            fb.input_finished()
            np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])

    t = median_seconds(knf_all, max(1, args.repeats // 2))
    rows.append(("kaldi-native-fbank, 80 bins (one clip at a time)", *rates(args.knf_clips, t)))
    return rows


# --------------------------------------------------------------------------------------- PaSST mel
def numpy_passt(x: np.ndarray, banks: np.ndarray) -> np.ndarray:
    """PaSST's recipe in vectorised numpy (float32): pre-emphasis, centred STFT, power, mel, log, normalise."""
    x = x[:, 1:] - 0.97 * x[:, :-1]
    padded = np.pad(x, ((0, 0), (512, 512)), mode="reflect")
    n_frames = 1 + (padded.shape[1] - 1024) // 320
    frames = np.lib.stride_tricks.sliding_window_view(padded, 1024, axis=1)[:, ::320][:, :n_frames]
    window = np.zeros(1024, np.float32)
    window[112:912] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 799)
    spec = np.fft.rfft(frames * window, axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power[..., :512] @ banks.T
    return (np.log(mel + 1e-5) + 4.5) / 5.0


TORCH_SCRIPT = textwrap.dedent(r"""
    import json, math, statistics, sys, time
    import torch
    torch.set_num_threads(int(sys.argv[4]))
    batch, seconds, repeats = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])

    def kaldi_mel_banks(num_bins, n_fft, sr, low, high):  # torchaudio get_mel_banks, vtln_warp_factor=1
        mel_lo, mel_hi = 1127.0 * math.log(1.0 + low / 700.0), 1127.0 * math.log(1.0 + high / 700.0)
        delta = (mel_hi - mel_lo) / (num_bins + 1)
        b = torch.arange(num_bins, dtype=torch.float32).unsqueeze(1)
        left, centre, right = mel_lo + b * delta, mel_lo + (b + 1.0) * delta, mel_lo + (b + 2.0) * delta
        mel = (1127.0 * (1.0 + (sr / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32) / 700.0).log())[None]
        return torch.max(torch.zeros(1), torch.min((mel - left) / (centre - left), (right - mel) / (right - centre)))

    window = torch.hann_window(800, periodic=False)
    kernel = torch.as_tensor([[[-0.97, 1.0]]])

    def forward(x):  # AugmentMelSTFT.forward in eval mode (kkoutini/PaSST models/preprocess.py)
        x = torch.nn.functional.conv1d(x.unsqueeze(1), kernel).squeeze(1)
        x = torch.stft(x, 1024, hop_length=320, win_length=800, center=True, normalized=False, window=window,
                       return_complex=True)
        x = torch.view_as_real(x).pow(2).sum(-1)
        banks = torch.nn.functional.pad(kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0), (0, 1), value=0.0)
        mel = torch.matmul(banks, x)
        return ((mel + 0.00001).log() + 4.5) / 5.0

    x = 0.1 * torch.randn(batch, int(seconds * 32000))
    with torch.no_grad():
        forward(x)
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            forward(x)
            wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    print(json.dumps({"clips_per_s": batch / statistics.median(wall), "clips_per_cpu_s": batch / statistics.median(cpu),
                      "torch": torch.__version__}))
""")


def bench_passt(args) -> list[tuple[str, float, float]]:
    import jax

    from audiorep.audio.frontends import PASST_MEL, PasstMel, mel_banks

    batch = args.passt_batch
    x = clips(batch, args.seconds, 32000, seed=1)
    fe = PasstMel()
    xd = jax.device_put(x)
    fe(xd).block_until_ready()
    rows = [(f"JAX PasstMel (batch {batch}, jit)", *rates(batch, median_seconds(lambda: fe(xd).block_until_ready(),
                                                                               args.repeats)))]
    banks = mel_banks(128, 1024, 32000, PASST_MEL.fmin, PASST_MEL.fmax_hz)
    numpy_passt(x, banks)
    rows.append((f"numpy PaSST recipe (batch {batch})", *rates(batch, median_seconds(lambda: numpy_passt(x, banks),
                                                                                   max(1, args.repeats // 2)))))
    py = torch_baseline.python()
    if py is None:
        rows.append((f"official torch recipe: skipped (set {torch_baseline.ENV} to a Python with torch)", NAN, NAN))
        return rows
    threads = str(os.cpu_count() or 1)
    res = subprocess.run([py, "-c", TORCH_SCRIPT, str(batch), str(args.seconds), str(args.repeats), threads],
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        rows.append((f"official torch recipe: failed ({res.stderr.strip().splitlines()[-1:]})", NAN, NAN))
        return rows
    out = json.loads(res.stdout.strip().splitlines()[-1])
    rows.append((f"official torch recipe, torch {out['torch']} (batch {batch})", out["clips_per_s"],
                 out["clips_per_cpu_s"]))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, epilog=torch_baseline.HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    ap.add_argument("--batch", type=int, default=32, help="JAX fbank batch (default 32)")
    ap.add_argument("--passt-batch", type=int, default=16, help="PaSST batch for every implementation (default 16)")
    ap.add_argument("--knf-clips", type=int, default=32, help="clips per kaldi-native-fbank timing")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats; the median is reported")
    ap.add_argument("--quick", action="store_true", help="3 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 3

    import jax
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
                  f"{os.cpu_count()} CPU cores; LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '-'}; "
                  f"{args.seconds:g} s clips")
    for title, rows, base_key in (("Kaldi fbank (16 kHz)", bench_fbank(args), "kaldi-native-fbank"),
                                  ("PaSST mel (32 kHz)", bench_passt(args), "official torch")):
        table = Table(title=title)
        table.add_column("implementation")
        table.add_column("clips/s", justify="right")
        table.add_column(f"x {base_key}", justify="right")
        table.add_column("clips/CPU-s", justify="right")
        table.add_column("x (CPU)", justify="right")
        base = next((r for r in rows if r[0].startswith(base_key) and np.isfinite(r[1])), None)
        if base is None:
            base = next((r for r in rows if r[0].startswith("numpy")), None)
        for name, rate, cpu_rate in rows:
            cells = [name]
            for value, ref in ((rate, base[1] if base else NAN), (cpu_rate, base[2] if base else NAN)):
                ok = np.isfinite(value)
                cells += [f"{value:.1f}" if ok else "-", f"{value / ref:.2f}" if ok and np.isfinite(ref) else "-"]
            table.add_row(*cells)
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
