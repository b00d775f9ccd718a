"""One epoch of each semi-supervised method (downstream/semisup.py) against a PyTorch implementation of the same head
and method on the same embeddings, in the same run; the ratio is printed.

    AUDIOREP_TORCH_PYTHON=/path/to/python-with-torch .venv/bin/python benchmarks/semisup.py [--points 8]

audiorep trains every grid point of one head shape at once (jit + vmap); the PyTorch side trains the points one
after another, as one would without vmap: the head (Linear -> BatchNorm -> Dropout -> ReLU -> Linear), Adam, 64
labelled + 64 unlabelled rows a step, the same number of steps; FixMatch (threshold 0.95), MixMatch (K=2, T=0.5,
Beta(0.75, 0.75)), Mean Teacher (EMA 0.999, MSE consistency). The audiorep time is the second call (the first
compiles; the compile is printed apart). Without $AUDIOREP_TORCH_PYTHON the PyTorch side is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch_baseline

from audiorep.downstream import probes as P
from audiorep.downstream import semisup as S

TORCH_SIDE = textwrap.dedent('''
    import json, sys, time
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(sys.argv[3]))
    d = np.load(sys.argv[1])
    cfg = json.loads(sys.argv[2])
    xl, yl = torch.tensor(d["xl"]), torch.tensor(d["yl"]).long()
    xu, su = torch.tensor(d["xu"]), torch.tensor(d["su"])
    classes, b, steps, k = cfg["classes"], cfg["batch"], cfg["steps"], xl.shape[1]

    def build(dim):
        return torch.nn.Sequential(torch.nn.Linear(dim, cfg["hidden"]), torch.nn.BatchNorm1d(cfg["hidden"]),
                                   torch.nn.Dropout(0.1), torch.nn.ReLU(), torch.nn.Linear(cfg["hidden"], classes))

    def view(x, idx):
        return x[idx, torch.randint(0, k, (len(idx),))]

    out = {}
    for method in cfg["methods"]:
        t0 = time.perf_counter()
        for seed in range(cfg["points"]):
            torch.manual_seed(seed)
            model = build(xl.shape[2])
            teacher = build(xl.shape[2])
            teacher.load_state_dict(model.state_dict())
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            for s in range(steps):
                il, iu = torch.randint(0, len(xl), (b,)), torch.randint(0, len(xu), (b,))
                x, y = view(xl, il), yl[il]
                if method == "supervised":
                    loss = F.cross_entropy(model(x), y)
                elif method == "fixmatch":
                    logits = model(torch.cat([x, view(xu, iu), view(su, iu)]))
                    ll, lw, ls = logits.split(b)
                    p = lw.detach().softmax(-1)
                    conf, pseudo = p.max(-1)
                    loss = F.cross_entropy(ll, y) + ((conf >= 0.95).float() *
                                                     F.cross_entropy(ls, pseudo, reduction="none")).mean()
                elif method == "mixmatch":
                    u = torch.cat([xu[iu, i] for i in range(k)])
                    with torch.no_grad():
                        g = model(u).softmax(-1).reshape(k, b, -1).mean(0) ** 2
                        g = g / g.sum(-1, keepdim=True)
                    xs = torch.cat([x, u])
                    ys = torch.cat([F.one_hot(y, classes).float(), g.repeat(k, 1)])
                    lam = float(np.random.beta(0.75, 0.75))
                    lam = max(lam, 1 - lam)
                    perm = torch.randperm(len(xs))
                    xm, ym = lam * xs + (1 - lam) * xs[perm], lam * ys + (1 - lam) * ys[perm]
                    logits = model(xm)
                    loss = -(ym * logits.log_softmax(-1)).sum(-1).mean()  # soft CE, both parts
                else:
                    xa = torch.cat([x, view(xu, iu)])
                    xb = torch.cat([view(xl, il), view(xu, iu)])
                    logits = model(xa)
                    with torch.no_grad():
                        t = teacher(xb).softmax(-1)
                    loss = F.cross_entropy(logits[:b], y) + ((logits.softmax(-1) - t) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if method == "meanteacher":
                    with torch.no_grad():
                        for pt, ps in zip(teacher.state_dict().values(), model.state_dict().values()):
                            if pt.dtype.is_floating_point:
                                pt.mul_(0.999).add_(ps, alpha=0.001)
        out[method] = time.perf_counter() - t0
    print(json.dumps(out))
''')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, help="heads (seeds) trained per method")
    ap.add_argument("--labelled", type=int, default=200)
    ap.add_argument("--unlabelled", type=int, default=1800)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch", default=torch_baseline.python(), help=torch_baseline.HELP)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.classes, args.dim)).astype(np.float32)
    yl = rng.integers(0, args.classes, args.labelled).astype(np.int32)
    yu = rng.integers(0, args.classes, args.unlabelled)
    noise = lambda n: rng.normal(size=(n, 2, args.dim)).astype(np.float32)
    xl, xu, su = centres[yl][:, None] + noise(len(yl)), centres[yu][:, None] + noise(len(yu)), \
        centres[yu][:, None] + 2 * noise(len(yu))
    xv, yv = xl[:, 0], yl
    hyper = S.Hyper(lr_schedule="constant")  # the PyTorch side keeps Adam's lr fixed
    steps = -(-max(args.labelled, args.unlabelled) // hyper.batch)
    points = tuple(P.GridPoint(hidden_layers=1, hidden_dim=args.hidden, lr=1e-3, seed=s) for s in range(args.points))
    grid = P.Grid("bench", points, P.Schedule(max_epochs=1, check_every=1, patience=1), repeats=args.points)
    ours = {}
    for method in S.METHODS:
        t0 = time.perf_counter()
        S.train_method(method, xl, yl, xu, su, xv, yv, grid, num_classes=args.classes, hyper=hyper)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        S.train_method(method, xl, yl, xu, su, xv, yv, grid, num_classes=args.classes, hyper=hyper)
        ours[method] = (time.perf_counter() - t0, first)
    theirs = None
    if args.torch is None:
        print(f"PyTorch side skipped: set ${torch_baseline.ENV} (benchmarks/torch_baseline.py).")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data, script = Path(tmp) / "d.npz", Path(tmp) / "side.py"
            np.savez(data, xl=xl, yl=yl, xu=xu, su=su)
            script.write_text(TORCH_SIDE)
            cfg = {"methods": list(S.METHODS), "points": args.points, "classes": args.classes, "batch": hyper.batch,
                   "steps": steps, "hidden": args.hidden}
            out = subprocess.run([args.torch, str(script), str(data), json.dumps(cfg), str(args.threads)],
                                 capture_output=True, text=True, check=True)
            theirs = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"one epoch = {steps} steps of {hyper.batch} labelled + {hyper.batch} unlabelled rows, {args.points} heads "
          f"(1 x {args.hidden}) per method, {args.dim}-d embeddings")
    for method, (sec, first) in ours.items():
        line = f"{method:12s} audiorep {sec:7.2f} s (first call, with compile: {first:.1f} s)"
        if theirs is not None:
            line += f"   PyTorch {theirs[method]:7.2f} s   ratio {theirs[method] / sec:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
