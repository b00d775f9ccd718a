"""`audiorep stream`: embeddings and detection scores over a sliding window of a file or of raw PCM on stdin."""

from __future__ import annotations

import argparse
import json
import sys
import time

from audiorep.cli.common import (
    LAYER_HELP,
    Command,
    add_embedder_arguments,
    add_model_argument,
    add_quiet_argument,
    positive_int,
)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


def run(args: argparse.Namespace) -> int:
    # numpy, JAX and the model load here: `audiorep --help` stays instant
    import numpy as np

    import audiorep
    from audiorep.downstream.heads import Head
    from audiorep.downstream.stream import Streamer, StreamError, file_blocks, pcm_blocks

    if args.input != "-" and (args.format or args.rate or args.channels != 1):
        raise StreamError("--format, --rate and --channels describe raw PCM on stdin ('-'); a file names its own. "
                          "Leave them out.")
    head = Head.load(args.head) if args.head else None
    trained = head.model if head else {}
    options = {key: getattr(args, key) if getattr(args, key) is not None else trained.get(key)
               for key in ("layer", "pooling", "frequency")}
    options["layer"] = options["layer"] if options["layer"] is not None else "last"
    model = audiorep.load(args.model, **options)
    if args.input == "-":
        rate = args.rate or model.sample_rate
        blocks = pcm_blocks(sys.stdin.buffer, args.format or "s16le", args.block_ms, rate, args.channels)
    else:
        blocks, rate = file_blocks(args.input, args.block_ms, realtime=args.realtime)
    streamer = Streamer(model, args.window_ms, args.hop_ms, sample_rate=rate, head=head)
    streamer.warm_up()  # compile before the first block arrives: latency is the steady state's
    label = None
    if head is not None and head.positive is not None:
        label = head.classes[head.positive]
    latencies, busy, steps = [], 0.0, 0
    start_rss = peak_rss_mb()
    out = sys.stdout

    def emit(results):
        for step in results:
            norm = float(np.linalg.norm(step.embedding))
            if args.jsonl:
                row = {"time_ms": round(step.time_ms, 3), "norm": norm}
                if step.score is not None:
                    row["score"] = step.score if isinstance(step.score, float) else \
                        dict(zip(head.classes, map(float, step.score)))
                if args.embedding:
                    row["embedding"] = [float(v) for v in step.embedding]
                out.write(json.dumps(row) + "\n")
            elif step.score is None:
                out.write(f"{step.time_ms / 1000:10.3f} s  norm {norm:.4f}\n")
            elif isinstance(step.score, float):
                out.write(f"{step.time_ms / 1000:10.3f} s  {label} {step.score:.4f}\n")
            else:
                best = int(np.argmax(step.score))
                out.write(f"{step.time_ms / 1000:10.3f} s  {head.classes[best]} {float(step.score[best]):.4f}\n")
        if results:
            out.flush()  # a live stream: each hop's line as soon as it is known

    for block in blocks:
        t0 = time.perf_counter()
        results = streamer.push(block)
        dt = time.perf_counter() - t0
        latencies.append(dt)
        busy += dt
        steps += len(results)
        emit(results)
    t0 = time.perf_counter()
    results = streamer.finish()
    busy += time.perf_counter() - t0
    steps += len(results)
    emit(results)
    seconds = streamer.received / rate
    if not args.quiet:
        lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
        rtf = busy / seconds if seconds else float("nan")
        print(f"stream: {seconds:.2f} s of audio at {rate} Hz, {len(latencies)} blocks of {args.block_ms:g} ms, "
              f"{steps} windows of {args.window_ms:g} ms every {args.hop_ms:g} ms; real-time factor {rtf:.3f} "
              f"(compute / audio); latency per block mean {lat.mean():.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
              f"max {lat.max():.1f} ms; peak RSS {peak_rss_mb():.0f} MiB (+{peak_rss_mb() - start_rss:.0f} while "
              "streaming)", file=sys.stderr)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="FILE|-", help="a sound file, or '-' for raw PCM on stdin")
    add_model_argument(p)
    p.add_argument("--head", default=None, metavar="DIR",
                   help="a head saved by `audiorep probe --save-head`: print its score per hop (the positive class's "
                        "probability for a detection head); its layer/pooling/frequency are used unless given")
    p.add_argument("--window-ms", type=positive_float, default=4000.0, help="window length (default 4000)")
    p.add_argument("--hop-ms", type=positive_float, default=500.0, help="time between results (default 500)")
    p.add_argument("--block-ms", type=positive_float, default=100.0, help="audio read per block (default 100)")
    p.add_argument("--realtime", action="store_true",
                   help="release a file's blocks at the pace it would play (as a live source); default: as fast as "
                        "they are read")
    p.add_argument("--format", default=None, choices=("s16le", "f32le"), help="stdin PCM sample format (default s16le)")
    p.add_argument("--rate", type=positive_int, default=None, help="stdin PCM sample rate (default: the model's)")
    p.add_argument("--channels", type=positive_int, default=1, help="stdin PCM interleaved channels (averaged)")
    add_embedder_arguments(p, layer_default=None, layer_help=f"{LAYER_HELP}; with --head: the head's unless given")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per hop: time_ms, norm, score")
    p.add_argument("--embedding", action="store_true", help="with --jsonl: include each window's embedding")
    add_quiet_argument(p, help="no summary line")


COMMAND = Command(
    "stream", help="embeddings / detection scores every hop over a sliding window of a file or stdin PCM",
    description="Read audio in blocks (a file, or raw PCM on stdin with '-') and print, every --hop-ms, the embedding "
                "norm or, with --head (from `audiorep probe ... --save-head DIR`), the head's score of the last "
                "--window-ms: exactly the offline scene embedding of that window. Memory stays bounded whatever the "
                "length. A summary (real-time factor, latency per block) goes to stderr.",
    arguments=add_arguments, run=run)
