"""The results store and the leaderboard built from it: JSONL rows -> markdown, static HTML, CSV.

`Result` is one (model, task) evaluation as downstream/tasks/ returns it. Results accumulate in an
append-only JSONL file: `append_result` adds one line with a single `O_APPEND` write under an advisory
lock and never rewrites earlier lines, so concurrent runs and crashes cannot lose history (a torn last
line is skipped with a warning when read). `write_leaderboard` turns the latest row per (model, task) into
  leaderboard.md         a markdown table (primary metric, mean +- std over folds/seeds); then the per-group
                         table (worst group and max-min gap per speaker / gender / language / source / attack
                         column, rows' extra['groups']) and the cross-domain protocol table (in-domain vs
                         cross-domain per held-out value and the gap, extra['protocol']) when rows carry them
  index.html             one self-contained page: sortable table, heatmap of per-task normalised scores,
                         per-task bar charts (matplotlib PNGs inlined as base64), the per-group and
                         cross-domain tables, every run in detail
  leaderboard.csv        model x task primary scores, all tasks
  hear_leaderboard.csv   hearbenchmark.com's docs/leaderboard.csv layout (Model, URL, 19 HEAR task
                         columns in its order; our tasks with a HEAR counterpart filled, the rest empty)
  assets/                the training curves (training_curves.png) of models probed from a model directory
                         that holds them (pretrained models), and the DET curve and score histograms of
                         detection rows (extra['detection'], written by the tasks runner), linked from the page
A score that is NaN is shown as n/a and ranks last.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as _dt
import hashlib
import html
import io
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiorep import __version__
from audiorep.downstream.metrics import HIGHER_IS_BETTER
from audiorep.errors import AudiorepError
from audiorep.paths import write_atomically


class ResultsError(AudiorepError, ValueError):
    """A results file or row that cannot be read."""


@dataclass
class Result:
    """One evaluation of one model on one task (the leaderboard's row).

    mean/std/folds are the primary metric over folds (or seeds); `scores` holds the mean of every metric
    the task reports; `grid` and `seed` say how the probe was chosen; `extra` carries anything else
    (split sizes, embedding cache key, timings).
    """

    model: str
    task: str
    metric: str
    mean: float
    std: float = 0.0
    folds: list[float] = field(default_factory=list)
    checkpoint: str = ""
    higher_is_better: bool = True
    scores: dict[str, float] = field(default_factory=dict)
    probe: str = "mlp"
    grid: dict = field(default_factory=dict)
    seed: int = 0
    version: str = ""
    date: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.version:
            self.version = __version__
        if not self.date:
            self.date = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=_jsonable, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        """A row as read from JSON. Scores may be NaN (a JSON NaN, a "NaN" string or null: shown as n/a); any
        other value that is not a number is a ResultsError naming the field."""
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"model", "task", "metric", "mean"} - set(d)
        if missing:
            raise ResultsError(f"result row lacks {sorted(missing)}; rows come from audiorep probe / tasks.run.")
        row = {k: v for k, v in d.items() if k in known}
        row["mean"] = as_score(row["mean"], "mean")
        if "std" in row:
            row["std"] = as_score(row["std"], "std")
        if "folds" in row:
            if not isinstance(row["folds"], list):
                raise ResultsError(f"'folds' is {row['folds']!r}, not a list of numbers.")
            row["folds"] = [as_score(v, "folds") for v in row["folds"]]
        if "scores" in row:
            if not isinstance(row["scores"], dict):
                raise ResultsError(f"'scores' is {row['scores']!r}, not a mapping of metric -> number.")
            row["scores"] = {k: as_score(v, f"scores.{k}") for k, v in row["scores"].items()}
        return cls(**row)


def as_score(value, field_name: str) -> float:
    """A score field as a float: numbers as they are; NaN / Infinity strings and null as float (null -> NaN)."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ResultsError(f"{field_name!r} is {value!r}, not a number (NaN is allowed and shown as n/a).")


def finite(x: float) -> bool:
    """True for a real, finite score (False for NaN and +-inf)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


# ------------------------------------------------------------------------------------------- store
def append_result(path: str | os.PathLike, result: Result) -> None:
    """Append one row to the JSONL store (created when missing) in one O_APPEND write, fsync'ed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (result.to_json() + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        try:
            # POSIX only: elsewhere appends go unlocked
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no advisory locks here: O_APPEND alone still keeps lines whole
            pass
        # A previous writer killed mid-line leaves no newline at the end: start on a fresh line.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            raise ResultsError(f"{path}: short write ({written} of {len(line)} bytes); the disk may be full.")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_results(path: str | os.PathLike) -> list[Result]:
    """All rows of a JSONL store in file order. Unparseable or malformed lines are skipped with a warning naming
    the file and line (a NaN score is not malformed: it reads as NaN)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file. Create one with `audiorep probe ... --results {path}`.")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            warnings.warn(f"{path}:{n}: skipping unreadable result row ({err}); a run was probably interrupted "
                          "while writing it.", stacklevel=2)
            continue
        try:
            if not isinstance(row, dict):
                raise ResultsError(f"expected a JSON object, got {type(row).__name__}")
            out.append(Result.from_dict(row))
        except (TypeError, ResultsError) as err:
            warnings.warn(f"{path}:{n}: skipping malformed result row: {err} Fix or delete the line.", stacklevel=2)
    return out


# ------------------------------------------------------------------------------------------- tables
def latest(results: list[Result]) -> dict[tuple[str, str], Result]:
    """The most recent row per (model, task): later dates win, then later lines."""
    best: dict[tuple[str, str], Result] = {}
    for r in results:
        key = (r.model, r.task)
        if key not in best or r.date >= best[key].date:
            best[key] = r
    return best


@dataclass
class Board:
    """Models x tasks of the latest results, with per-task normalised scores (1 = best model, 0 = worst)."""

    models: list[str]
    tasks: list[str]
    cells: dict[tuple[str, str], Result]

    @classmethod
    def from_results(cls, results: list[Result]) -> Board:
        cells = latest([r for r in results if not is_semisup(r)])  # those have their own section
        tasks = sorted({t for _, t in cells})
        models = sorted({m for m, _ in cells})
        board = cls(models, tasks, cells)

        def rank(m: str) -> tuple[bool, float]:  # best first; models without any finite score last
            v = board.mean_normalised(m)
            return (not finite(v), -v if finite(v) else 0.0)

        board.models = sorted(models, key=rank)
        return board

    def metric(self, task: str) -> str:
        return next(r.metric for (m, t), r in self.cells.items() if t == task)

    def normalised(self, model: str, task: str) -> float:
        r = self.cells.get((model, task))
        if r is None or not finite(r.mean):
            return float("nan")
        vals = [c.mean for (m, t), c in self.cells.items() if t == task and finite(c.mean)]
        lo, hi = min(vals), max(vals)
        if hi == lo:
            return 1.0
        z = (r.mean - lo) / (hi - lo)
        return z if r.higher_is_better else 1.0 - z

    def mean_normalised(self, model: str) -> float:
        vals = [self.normalised(model, t) for t in self.tasks if (model, t) in self.cells]
        vals = [v for v in vals if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")


def format_score(r: Result | None) -> str:
    """A cell: 'mean ± std' over several folds, 'mean' for one, 'n/a' for a NaN score, '–' for no result."""
    if r is None:
        return "–"
    if not finite(r.mean):
        return "n/a"
    return f"{r.mean:.4f} ± {r.std:.4f}" if r.folds and len(r.folds) > 1 and finite(r.std) else f"{r.mean:.4f}"


def format_number(x: float, digits: int = 3) -> str:
    """A number with `digits` decimals, or 'n/a' when it is NaN / infinite."""
    return f"{x:.{digits}f}" if finite(x) else "n/a"


def to_markdown(results: list[Result]) -> str:
    """A markdown table: one row per model, one column per task (primary metric), plus mean normalised score;
    then, when rows carry them, the per-group table, the cross-domain protocol table and the semi-supervised
    method x labelled-fraction tables."""
    b = Board.from_results(results)
    head = ["Model"] + [f"{t} ({b.metric(t)}{'' if _hib(b, t) else ' ↓'})" for t in b.tasks] + ["Mean norm."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in b.models:
        row = [m] + [format_score(b.cells.get((m, t))) for t in b.tasks] + [format_number(b.mean_normalised(m))]
        lines.append("| " + " | ".join(row) + " |")
    for title, (cols, rows) in (("Per group", group_table(results)), ("Cross-domain protocols",
                                                                      protocol_table(results))):
        if rows:
            lines += ["", f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    for (model, task), curves in sorted(semisup_curves(results).items()):  # semi-supervised heads per fraction
        cols, rows = semisup_table(curves)
        lines += ["", f"## Semi-supervised heads: {model} on {task}", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)] + ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


GROUP_COLUMNS_HEAD = ("Model", "Task", "Column", "Metric", "Groups", "Worst group", "Worst", "Best", "Gap")


def group_table(results: list[Result]) -> tuple[tuple[str, ...], list[tuple]]:
    """(header, rows) of the per-group metrics of the latest row per (model, task): per metadata column
    (gender, language, speaker, source, attack_id) the number of groups scored, the worst group and its
    score, the best score, and the max-min gap (extra['groups'], downstream/tasks/groups.py)."""
    rows = []
    for (model, task), r in sorted(latest(results).items()):
        groups = r.extra.get("groups") if isinstance(r.extra, dict) else None
        for column, rep in sorted((groups or {}).items()):
            values = [v for v in map(_loose, (rep.get("per_group") or {}).values()) if finite(v)]
            if not values:
                continue
            best = (max if higher_is_better(rep.get("metric", r.metric)) else min)(values)
            rows.append((model, task, column, rep.get("metric", r.metric), len(values), rep.get("worst_group", ""),
                         format_number(_loose(rep.get("worst")), 4), format_number(best, 4),
                         format_number(_loose(rep.get("gap")), 4)))
    return GROUP_COLUMNS_HEAD, rows


PROTOCOL_COLUMNS_HEAD = ("Model", "Task", "Protocol", "Held out", "In-domain", "Cross-domain", "Gap", "Test clips")


def protocol_table(results: list[Result]) -> tuple[tuple[str, ...], list[tuple]]:
    """(header, rows) of the cross-domain protocol rows (extra['protocol']): per held-out value the in-domain
    and cross-domain scores side by side and their gap (positive = worse cross-domain), then the mean."""
    rows = []
    for (model, task), r in sorted(latest(results).items()):
        proto = r.extra.get("protocol") if isinstance(r.extra, dict) else None
        if not proto:
            continue
        for h in proto.get("rows", []):
            rows.append((model, task, f"{proto.get('name')} ({proto.get('column')})", h.get("held_out"),
                         format_number(_loose(h.get("in_domain")), 4),
                         format_number(_loose(h.get("cross_domain")), 4),
                         format_number(_loose(h.get("gap")), 4), h.get("test", "")))
        rows.append((model, task, f"{proto.get('name')} ({proto.get('column')})", "mean",
                     format_number(_loose(proto.get("in_domain_mean")), 4),
                     format_number(_loose(proto.get("cross_domain_mean")), 4),
                     format_number(_loose(proto.get("gap_mean")), 4), ""))
    return PROTOCOL_COLUMNS_HEAD, rows


def _loose(value) -> float:
    """A stored score, NaN when it is not a number (the per-group and protocol tables never refuse a row)."""
    try:
        return as_score(value, "score")
    except ResultsError:
        return float("nan")


def _html_table(cols: tuple[str, ...], rows: list[tuple]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f'<td data-v="{e(str(v))}">{e(str(v))}</td>' for v in row) + "</tr>"
                   for row in rows)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _hib(b: Board, task: str) -> bool:
    return next(r.higher_is_better for (m, t), r in b.cells.items() if t == task)


def to_csv(results: list[Result]) -> str:
    """Model, then one column per task with the primary test score."""
    b = Board.from_results(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Model", *b.tasks])
    for m in b.models:
        w.writerow([m] + [_num(b.cells.get((m, t))) for t in b.tasks])
    return buf.getvalue()


# hearbenchmark.com docs/leaderboard.csv: its task columns, in its order.
HEAR_COLUMNS = (
    "Beehive", "Beijing Opera", "CREMA-D", "DCASE 2016", "ESC-50", "FSD50K", "GTZAN Genre", "GTZAN Music/Speech",
    "Gunshot", "Libricount", "Maestro 5h", "Mridangam Stroke", "Mridangam Tonic", "NSynth Pitch 50h",
    "NSynth Pitch 5h", "Speech commands 5h", "Speech commands full", "Vocal Imitation", "VoxLingua107 top 10",
)
# Our task names -> HEAR's column (only tasks whose protocol and metric match HEAR's).
HEAR_TASKS = {"esc50": "ESC-50", "speech_commands12": "Speech commands full"}


def to_hear_csv(results: list[Result], urls: dict[str, str] | None = None) -> str:
    """The HEAR leaderboard layout: Model, URL, then the 19 HEAR task columns (scores in 0-1)."""
    b = Board.from_results(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Model", "URL", *HEAR_COLUMNS])
    inverse = {v: k for k, v in HEAR_TASKS.items()}
    for m in b.models:
        w.writerow([m, (urls or {}).get(m, "")] + [_num(b.cells.get((m, inverse[c]))) if c in inverse else ""
                                                   for c in HEAR_COLUMNS])
    return buf.getvalue()


def _num(r: Result | None) -> str:
    return "" if r is None or not finite(r.mean) else f"{r.mean:.10g}"


# ------------------------------------------------------------------------------------------- HTML
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    # matplotlib (about a second) only when a page is drawn
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _heatmap(b: Board) -> str:
    # matplotlib (about a second) only when a page is drawn
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    z = np.array([[b.normalised(m, t) for t in b.tasks] for m in b.models])
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(b.tasks), 0.9 + 0.45 * len(b.models)))
    im = ax.imshow(np.ma.masked_invalid(z), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(b.tasks)), b.tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(b.models)), b.models)
    for i, m in enumerate(b.models):
        for j, t in enumerate(b.tasks):
            r = b.cells.get((m, t))
            if r is not None:
                ax.text(j, i, format_number(r.mean), ha="center", va="center", fontsize=8,
                        color="white" if not z[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="normalised score (1 = best)")
    ax.set_title("Per-task normalised scores")
    return _png(fig)


def _bars(b: Board, task: str) -> str:
    # matplotlib (about a second) only when a page is drawn
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    every = [(m, b.cells[(m, task)]) for m in b.models if (m, task) in b.cells]
    rows = [(m, r) for m, r in every if finite(r.mean)]  # a NaN score has no bar; its label says n/a
    rows.sort(key=lambda mr: mr[1].mean, reverse=every[0][1].higher_is_better)
    rows += [(m, r) for m, r in every if not finite(r.mean)]
    mean = [r.mean if finite(r.mean) else 0.0 for _, r in rows]
    std = [r.std if finite(r.mean) and finite(r.std) else 0.0 for _, r in rows]
    fig, ax = plt.subplots(figsize=(4.6, 0.6 + 0.42 * len(rows)))
    y = np.arange(len(rows))
    ax.barh(y, mean, xerr=std, color="#3b7dd8", capsize=3)
    ax.set_yticks(y, [m for m, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(every[0][1].metric + ("" if every[0][1].higher_is_better else " (lower is better)"))
    ax.set_title(task)
    right = max([mu + sd for mu, sd in zip(mean, std)] + [0.0])
    for yi, (_, r), mu, sd in zip(y, rows, mean, std):
        ax.text(mu + sd + 0.01 * right, yi, f" {format_number(r.mean)}", va="center", fontsize=8)
    ax.set_xlim(min([0.0] + mean), right * 1.18 if right > 0 else 1.0)
    return _png(fig)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#1d232b;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #dde3ea}
.sub{color:#5b6573}table{border-collapse:collapse;margin:1em 0;font-variant-numeric:tabular-nums}
th,td{padding:.35em .7em;border-bottom:1px solid #e6eaef;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f3f6f9;cursor:pointer;user-select:none}
th.sorted-asc::after{content:" ▲"}th.sorted-desc::after{content:" ▼"}tr:hover td{background:#f7fafc}
td.best{font-weight:600}.grid{display:flex;flex-wrap:wrap;gap:1em}.grid img{border:1px solid #e6eaef}
.grid img{width:calc(50% - 1em);box-sizing:border-box;height:auto}
details{margin:.5em 0}code{background:#f3f6f9;padding:0 .25em;border-radius:3px}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
    var asc=!th.classList.contains('sorted-asc');
    t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
    th.classList.add(asc?'sorted-asc':'sorted-desc');
    var rows=Array.from(t.tBodies[0].rows);
    rows.sort(function(a,b){var x=a.cells[i].dataset.v, y=b.cells[i].dataset.v;
      var nx=parseFloat(x), ny=parseFloat(y);
      if(!isNaN(nx)&&!isNaN(ny)) return asc?nx-ny:ny-nx;
      if(isNaN(nx)!==isNaN(ny)) return isNaN(nx)?1:-1;
      return asc?String(x).localeCompare(y):String(y).localeCompare(x);});
    rows.forEach(function(r){t.tBodies[0].appendChild(r)});});});});
"""


def to_html(results: list[Result], title: str = "audiorep leaderboard", curves: dict[str, str] | None = None,
            detection: dict[tuple[str, str], dict[str, str]] | None = None,
            robustness: dict[tuple[str, str], str] | None = None) -> str:
    """A self-contained page (inline CSS, JS and images). `curves`: model -> a relative link to its training
    curves (pretrained models), shown beside the model's name. `robustness`: (model, task) -> a relative link to
    a robustness sweep's heatmap, shown in the Robustness section. `detection`: (model, task) -> relative links
    {'det_png', 'histogram_png'} of a detection row's plots, linked from its score cell and shown in a section."""
    b = Board.from_results(results)
    curves = curves or {}
    detection = detection or {}
    e = html.escape
    best = {}
    for t in b.tasks:
        vals = [(m, b.cells[(m, t)].mean) for m in b.models if (m, t) in b.cells and finite(b.cells[(m, t)].mean)]
        best[t] = (max if _hib(b, t) else min)(vals, key=lambda mv: mv[1])[0] if vals else None
    head = "".join(f"<th>{e(t)}<br><span class=sub>{e(b.metric(t))}{'' if _hib(b, t) else ' ↓'}</span></th>"
                   for t in b.tasks)
    body = []
    for m in b.models:
        tds = []
        for t in b.tasks:
            r = b.cells.get((m, t))
            v = r.mean if r is not None and finite(r.mean) else ""
            cls = ' class="best"' if best[t] == m else ""
            det = f' <a class=sub href="#{_anchor(m, t)}">DET</a>' if (m, t) in detection else ""
            tds.append(f'<td data-v="{v}"{cls} title="{e(format_score(r))}">{e(format_score(r))}{det}</td>')
        mn = b.mean_normalised(m)
        link = f' <a class=sub href="{e(curves[m])}">training curves</a>' if m in curves else ""
        body.append(f'<tr><td data-v="{e(m)}">{e(m)}{link}</td>{"".join(tds)}'
                    f'<td data-v="{mn if finite(mn) else ""}">{format_number(mn)}</td></tr>')
    runs = []
    for r in sorted(results, key=lambda r: r.date, reverse=True):
        sel = r.extra.get("selected") or r.grid.get("selected") or ""
        runs.append("<tr>" + "".join(f'<td data-v="{e(str(v))}">{e(str(v))}</td>' for v in (
            r.date, r.model, r.task, r.metric, format_number(r.mean, 4), format_number(r.std, 4),
            ", ".join(format_number(f, 4) for f in r.folds), r.probe, r.grid.get("name", ""), r.seed,
            json.dumps(sel) if sel else "", r.checkpoint[:12], r.version)) + "</tr>")
    bars = "".join(f'<img alt="{e(t)}" src="{_bars(b, t)}">' for t in b.tasks)
    plots = "".join(
        f'<h3 id="{_anchor(m, t)}">{e(m)} · {e(t)}</h3><div class="grid">'
        f'<img alt="DET curve, {e(m)} on {e(t)}" src="{e(links["det_png"])}">'
        f'<img alt="score histograms, {e(m)} on {e(t)}" src="{e(links["histogram_png"])}"></div>'
        for (m, t), links in sorted(detection.items()))
    plots = (f"<h2>Detection</h2><p class=sub>DET curves (miss vs false-alarm rate, normal-deviate axes; EER "
             f"marked) and bona fide / spoof score histograms of each split's test scores.</p>{plots}") if plots else ""
    fairness = ""
    cols, rows = group_table(results)
    if rows:
        fairness += (f"<h2>Per group</h2><p class=sub>The primary metric in every speaker / gender / language / source "
                     f"group (attack_id: per-attack EER against all bona fide trials) of the test data, mean over "
                     f"splits; the worst group and the max − min gap.</p>{_html_table(cols, rows)}")
    cols, rows = protocol_table(results)
    if rows:
        fairness += (f"<h2>Cross-domain protocols</h2><p class=sub>Each held-out value is tested on the same clips "
                     f"by a probe trained without it (cross-domain) and one trained with it (in-domain); gap &gt; 0: "
                     f"worse when unseen.</p>{_html_table(cols, rows)}")
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(title)}</title><style>{_CSS}</style></head><body>
<h1>{e(title)}</h1>
<p class=sub>{len(b.models)} models × {len(b.tasks)} tasks, latest run per pair; {len(results)} runs in the store.
Scores: test split of each task, mean ± std over folds; ↓ marks lower-is-better metrics. Generated {now}.</p>
<h2>Scores</h2>
<table class="sortable"><thead><tr><th>Model</th>{head}<th>Mean normalised</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
<p class=sub>Click a header to sort. Normalised score: per task, (score − worst) / (best − worst); 1 = best model.</p>
{f'<h2>Normalised scores</h2><img alt="heatmap" src="{_heatmap(b)}">' if b.tasks else ""}
<h2>Per task</h2><div class="grid">{bars}</div>
{fairness}
{robustness_html(results, robustness or {})}
{semisup_html(results)}
{plots}
<h2>All runs</h2>
<details><summary>{len(results)} runs (probe, grid, seed, selected configuration)</summary>
<table class="sortable"><thead><tr><th>date</th><th>model</th><th>task</th><th>metric</th><th>mean</th><th>std</th>
<th>folds</th><th>probe</th><th>grid</th><th>seed</th><th>selected</th><th>checkpoint</th><th>version</th></tr></thead>
<tbody>{''.join(runs)}</tbody></table></details>
<script>{_JS}</script></body></html>
"""


def _anchor(model: str, task: str) -> str:
    return "det-" + hashlib.sha1(f"{model}\0{task}".encode()).hexdigest()[:10]


ASSETS = "assets"
CURVES_PNG = "training_curves.png"  # what `audiorep pretrain` writes into the model directory it exports


def check_out_dir(out: Path) -> None:
    """Raise ResultsError, before any work, when `out` (or a folder above it) is an existing file."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under {p}, which is a file"
                raise ResultsError(f"--out {out} {what}; the leaderboard is a folder (leaderboard.md, index.html, "
                                   "leaderboard.csv, ...). Pass a folder path; the file is left as it is.")
            break
    assets = out / ASSETS
    if assets.exists() and not assets.is_dir():
        raise ResultsError(f"{assets} is a file; the leaderboard keeps copied training curves and detection plots in "
                           "a folder of that name. Move the file, or pass another --out.")


def write_leaderboard(results: list[Result] | str | os.PathLike, out_dir: str | os.PathLike,
                      title: str = "audiorep leaderboard") -> dict[str, Path]:
    """Write leaderboard.md, index.html, leaderboard.csv and hear_leaderboard.csv into out_dir, each atomically,
    after every page is rendered (a failure leaves the folder as it was); copy pretrained models' training
    curves into out_dir/assets/ (see `training_curves`).

    Raises:
      ResultsError: no results, or out_dir (or a folder above it) is a file.
    """
    out = Path(out_dir)
    check_out_dir(out)
    if not isinstance(results, list):
        results = read_results(results)
    if not results:
        raise ResultsError("no results to tabulate; run `audiorep probe ... --results FILE` first.")
    curves = training_curves(results)
    plots = detection_plots(results)
    heatmaps = robustness_heatmaps(results)
    files = {"markdown": out / "leaderboard.md", "html": out / "index.html", "csv": out / "leaderboard.csv",
             "hear_csv": out / "hear_leaderboard.csv"}
    texts = {"markdown": to_markdown(results), "html": to_html(results, title, curves={
        m: f"{ASSETS}/{name}" for m, (_, name) in curves.items()}, detection={
        key: {kind: f"{ASSETS}/{name}" for kind, (_, name) in found.items()} for key, found in plots.items()},
        robustness={key: f"{ASSETS}/{name}" for key, (_, name) in heatmaps.items()}),
        "csv": to_csv(results),
        "hear_csv": to_hear_csv(results)}
    out.mkdir(parents=True, exist_ok=True)
    if curves or plots or heatmaps:
        (out / ASSETS).mkdir(exist_ok=True)
    for src, name in curves.values():
        _copy_atomic(src, out / ASSETS / name)
        files[f"curves:{name}"] = out / ASSETS / name
    for src, name in heatmaps.values():
        _copy_atomic(src, out / ASSETS / name)
        files[f"robustness:{name}"] = out / ASSETS / name
    for found in plots.values():
        for src, name in found.values():
            _copy_atomic(src, out / ASSETS / name)
            files[f"detection:{name}"] = out / ASSETS / name
    for kind, text in texts.items():
        write_atomically(files[kind], lambda fh, text=text: fh.write(text.encode()))
    return files


def training_curves(results: list[Result]) -> dict[str, tuple[Path, str]]:
    """model name -> (its training-curves PNG, the file name for the board's assets folder), for each model of
    the board whose latest row came from a model directory (`extra['model_dir']`) holding training_curves.png."""
    found = {}
    for (model, _), r in sorted(latest(results).items()):
        src = r.extra.get("model_dir") if isinstance(r.extra, dict) else None
        if model in found or not src or not (Path(src) / CURVES_PNG).is_file():
            continue
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[:60]
        digest = hashlib.sha1(str(src).encode()).hexdigest()[:8]
        found[model] = (Path(src) / CURVES_PNG, f"training_curves-{slug}-{digest}.png")
    return found


DETECTION_PLOTS = ("det_png", "histogram_png")  # the PNG paths a detection row's extra['detection'] names


def detection_plots(results: list[Result]) -> dict[tuple[str, str], dict[str, tuple[Path, str]]]:
    """(model, task) -> {'det_png' | 'histogram_png': (the PNG, the file name for the board's assets folder)} for
    each latest row whose `extra['detection']` names plots that are still on disk."""
    found = {}
    for (model, task), r in sorted(latest(results).items()):
        det = r.extra.get("detection") if isinstance(r.extra, dict) else None
        if not isinstance(det, dict):
            continue
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{task}-{model}")[:80]
        plots = {}
        for kind in DETECTION_PLOTS:
            src = det.get(kind)
            if isinstance(src, str) and Path(src).is_file():
                digest = hashlib.sha1(src.encode()).hexdigest()[:8]
                plots[kind] = (Path(src), f"{kind.removesuffix('_png')}-{slug}-{digest}.png")
        if len(plots) == len(DETECTION_PLOTS):
            found[(model, task)] = plots
    return found


# ------------------------------------------------------------------------------------------------ robustness
def robustness_rows(results: list[Result]) -> list[Result]:
    """The latest row of each (model, task) that holds a robustness sweep (`audiorep robustness`)."""
    return [r for _, r in sorted(latest(results).items())
            if isinstance(r.extra, dict) and isinstance(r.extra.get("robustness"), dict)]


def robustness_heatmaps(results: list[Result]) -> dict[tuple[str, str], tuple[Path, str]]:
    """(model, task) -> (a sweep's heatmap PNG, the file name for the board's assets folder), for the latest
    robustness rows whose heatmap is still on disk."""
    found = {}
    for r in robustness_rows(results):
        src = r.extra["robustness"].get("heatmap_png")
        if isinstance(src, str) and Path(src).is_file():
            slug = "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in f"{r.task}-{r.model}")[:80]
            digest = hashlib.sha1(src.encode()).hexdigest()[:8]
            found[(r.model, r.task)] = (Path(src), f"robustness-{slug}-{digest}.png")
    return found


def robustness_html(results: list[Result], heatmaps: dict[tuple[str, str], str]) -> str:
    """The Robustness section: per sweep row, the metric per corruption x severity, the clean score and the mean
    drop, and its heatmap when `heatmaps` links one ('' when the store has no sweep)."""
    e = html.escape
    parts = []
    for r in robustness_rows(results):
        rob = r.extra["robustness"]
        sev = [str(s) for s in rob.get("severities", [])]
        kind = "relative drop" if r.higher_is_better else "increase"
        cols = ("Family", "Corruption", "Clean", *[f"Severity {s}" for s in sev], f"Mean {kind}")
        rows = []
        for name, t in sorted(rob.get("table", {}).items(), key=lambda kv: (kv[1].get("family", ""), kv[0])):
            drops = [_loose(t["drop"].get(s)) for s in sev]
            rows.append((t.get("family", ""), name, format_number(_loose(rob.get("clean")), 4),
                         *[format_number(_loose(t["values"].get(s)), 4) for s in sev],
                         format_number(float(np.mean(drops)) if drops else float("nan"), 3)))
        aug = rob.get("train_augment") or []
        note = f" Probes trained with {e(', '.join(aug))} (held-out corruptions only)." if aug else ""
        img = (f'<img alt="robustness heatmap, {e(r.model)} on {e(r.task)}" src="{e(heatmaps[(r.model, r.task)])}">'
               if (r.model, r.task) in heatmaps else "")
        parts.append(f"<h3>{e(r.model)} · {e(r.task)}</h3><p class=sub>{e(r.metric)}"
                     f"{'' if r.higher_is_better else ' ↓'}: clean {format_number(_loose(rob.get('clean')), 4)}, "
                     f"mean over corrupted cells {format_number(r.mean, 4)}.{note}</p>{_html_table(cols, rows)}{img}")
    if not parts:
        return ""
    return ("<h2>Robustness</h2><p class=sub>Probes trained on clean audio, scored on test clips corrupted at each "
            "severity (noise, modification, compression; <code>audiorep robustness</code>); mean drop: relative for "
            "accuracy-like metrics, absolute for error rates.</p>" + "".join(parts))


def _copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fh_in:
        write_atomically(dst, lambda fh: shutil.copyfileobj(fh_in, fh))


def higher_is_better(metric: str) -> bool:
    """Direction of a metric name from metrics.py (unknown names: higher is better)."""
    return HIGHER_IS_BETTER.get(metric, True)


# ---------------------------------------------------------------------------------------------- semi-supervised
def is_semisup(r: Result) -> bool:
    """A semi-supervised head's row (`audiorep probe --semi-supervised`): one method at one labelled fraction."""
    return isinstance(r.extra, dict) and isinstance(r.extra.get("semisup"), dict)


def semisup_curves(results: list[Result]) -> dict[tuple[str, str], dict[str, dict[float, Result]]]:
    """(model, task) -> method -> labelled fraction -> the latest semi-supervised row."""
    out: dict = {}
    for r in latest([r for r in results if is_semisup(r)]).values():
        s = r.extra["semisup"]
        out.setdefault((r.model, s["task"]), {}).setdefault(s["method"], {})[float(s["labelled_fraction"])] = r
    return out


def fraction_figure(curves: dict[str, dict[float, Result]], title: str):
    """The metric vs labelled fraction per method (log x axis; error bars: the spread over splits and seeds),
    supervised-only dashed and the 100 %-supervised score as a horizontal line. -> a matplotlib Figure."""
    import matplotlib  # matplotlib: imported on use, `audiorep --help` stays fast

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    metric = next(iter(next(iter(curves.values())).values())).metric
    full = curves.get("supervised", {}).get(1.0)
    for method, rows in sorted(curves.items(), key=lambda kv: (kv[0] != "supervised", kv[0])):
        fr = sorted(f for f in rows if method != "supervised" or f < 1.0 or len(rows) == 1)
        if not fr:
            continue
        ax.errorbar(fr, [rows[f].mean for f in fr], yerr=[rows[f].std for f in fr], marker="o", capsize=3,
                    label=method, linestyle="--" if method == "supervised" else "-")
    if full is not None:
        ax.axhline(full.mean, color="k", linewidth=0.8, linestyle=":", label="100 % supervised")
    ax.set_xscale("log")
    ax.set_xlabel("labelled fraction of the training split")
    ax.set_ylabel(metric + ("" if full is None or full.higher_is_better else " (lower is better)"))
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def semisup_table(curves: dict[str, dict[float, Result]]) -> tuple[tuple[str, ...], list[tuple]]:
    """Method x fraction cells 'mean ± std' (std over splits and seeds), the 100 %-supervised score beside them."""
    fractions = sorted({f for rows in curves.values() for f in rows if not (f == 1.0 and len(rows) > 1)} |
                       {f for m, rows in curves.items() if m != "supervised" for f in rows})
    full = curves.get("supervised", {}).get(1.0)
    cols = ("method", *[f"{f:g}" for f in fractions], "100 % supervised")
    rows = []
    for method, by in sorted(curves.items(), key=lambda kv: (kv[0] != "supervised", kv[0])):
        rows.append((method, *[f"{by[f].mean:.4f} ± {by[f].std:.4f}" if f in by else "" for f in fractions],
                     f"{full.mean:.4f}" if full is not None else ""))
    return cols, rows


def semisup_html(results: list[Result]) -> str:
    """The Semi-supervised section: per (model, task), the method x labelled-fraction table and the fraction plot
    ('' when the store has no semi-supervised rows)."""
    e = html.escape
    parts = []
    for (model, task), curves in sorted(semisup_curves(results).items()):
        cols, rows = semisup_table(curves)
        img = _png(fraction_figure(curves, f"{model} · {task}"))
        parts.append(f"<h3>{e(model)} · {e(task)}</h3>{_html_table(cols, rows)}"
                     f'<img alt="metric vs labelled fraction, {e(model)} on {e(task)}" src="{img}">')
    if not parts:
        return ""
    return ("<h2>Semi-supervised heads</h2><p class=sub>FixMatch, MixMatch and Mean Teacher heads on the frozen "
            "embeddings, trained with a labelled fraction of each training split (the rest unlabelled), beside "
            "supervised-only heads on the same labels; mean ± std over splits and seeds.</p>" + "".join(parts))
