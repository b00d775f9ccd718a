"""Trained probe heads saved as plain arrays + JSON, and loaded back to score new embeddings.

A head is the probe `audiorep probe` selected on validation (the best grid configuration, trained on the training
split; probes.ProbeResult.head): its layers (Linear, and BatchNorm -> ReLU between hidden layers, eval mode), the
training split's standardisation and what it predicts (classes, the detection task's positive class). It is tied to
the embeddings it was trained on: the model (name, checkpoint hash and frontend), layer, pooling and frequency
mode; scoring embeddings of another model is refused (`Head.check_embedder`), since its numbers would mean nothing.

On disk, a folder:
  head.npz   (np.load(..., allow_pickle=False)): mean f32[D], std f32[D]; per layer i: layer{i}_w f32[in, out],
             layer{i}_b f32[out]; hidden layers also layer{i}_gamma, layer{i}_beta, layer{i}_running_mean,
             layer{i}_running_var f32[out].
  head.json  format, classes, positive, multilabel, hidden_layers, embedding_dim, model {name, checkpoint, frontend,
             layer, pooling, frequency, sample_rate}, and where it came from (task, split, selected configuration,
             crop_s, audiorep version, date).
The JSON is written last, so a folder with a head.json holds a complete head.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiorep import __version__
from audiorep.downstream import probes
from audiorep.errors import AudiorepError
from audiorep.paths import nearest_existing, write_atomically

HEAD_FORMAT = 1
FILES = ("head.npz", "head.json")


class HeadError(AudiorepError, ValueError):
    """A head folder that cannot be written or read, or a head used with embeddings it was not trained on."""


@dataclass
class Head:
    """A trained probe head: f32[N, D] embeddings -> class probabilities f32[N, C].

    Attributes:
      layers: per layer {'w', 'b'} (+ {'gamma', 'beta'} for hidden layers), numpy arrays.
      stats: per hidden layer its BatchNorm running {'mean', 'var'}.
      mean, std: f32[D], the training split's standardisation.
      classes: class names, in the head's output order.
      positive: the class index a detection score is the probability of (bona fide), or None (classification).
      multilabel: sigmoid outputs (independent labels) instead of a softmax.
      model: the embeddings it was trained on: name, checkpoint, layer, pooling, frequency, sample_rate.
      info: where it came from (task, split, selected configuration, crop_s, version, date).
    """

    layers: list[dict]
    stats: list[dict]
    mean: np.ndarray
    std: np.ndarray
    classes: list[str]
    positive: int | None
    multilabel: bool
    model: dict
    info: dict = field(default_factory=dict)

    @classmethod
    def from_probe(cls, head: dict, *, classes, positive: int | None, multilabel: bool, model: dict,
                   info: dict | None = None) -> Head:
        """A Head from probes.ProbeResult.head and what the task and embedder know."""
        layers = [{k: np.asarray(v, np.float32) for k, v in layer.items()} for layer in head["params"]["layers"]]
        stats = [{k: np.asarray(v, np.float32) for k, v in st.items()} for st in head["stats"]]
        if positive is None and len(classes) == 2 and not multilabel:
            positive = 1
        return cls(layers, stats, np.asarray(head["mean"], np.float32), np.asarray(head["std"], np.float32),
                   [str(c) for c in classes], positive, bool(multilabel), dict(model), dict(info or {}))

    @property
    def embedding_dim(self) -> int:
        return int(self.mean.shape[0])

    def logits(self, x) -> np.ndarray:
        """f32[N, D] embeddings -> f32[N, C] logits (standardised as in training, then the probe in eval mode)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.embedding_dim:
            raise HeadError(f"the head takes embeddings f32[N, {self.embedding_dim}], got shape {x.shape}; embed "
                            f"with the model, layer and pooling it was trained on ({describe(self.model)}).")
        return probes.head_logits({"layers": self.layers}, self.stats, (x - self.mean) / self.std)

    def probabilities(self, x) -> np.ndarray:
        """f32[N, D] -> f32[N, C]: softmax (or per-label sigmoid) of the logits, as the probe's test scores."""
        z = self.logits(x)
        if self.multilabel:
            return 1 / (1 + np.exp(-z))
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    def score(self, x) -> np.ndarray:
        """f32[N, D] -> f32[N]: the probability of the positive (bona fide) class; a head without one (a
        classification head) gives its class probabilities f32[N, C] instead."""
        p = self.probabilities(x)
        return p if self.positive is None else p[:, self.positive]

    def check_embedder(self, embedder) -> None:
        """Refuse an embedder whose embeddings are not the ones this head was trained on.

        Raises:
          HeadError: another checkpoint, layer, pooling or frequency mode, or another embedding size.
        """
        bundle = getattr(embedder, "bundle", None)
        frontend = getattr(embedder, "frontend", None)
        have = {"checkpoint": getattr(bundle, "checkpoint_hash", None),
                "frontend": frontend.to_dict() if hasattr(frontend, "to_dict") else None,
                "layer": getattr(embedder, "layer", None),
                "pooling": getattr(embedder, "pooling", None), "frequency": getattr(embedder, "frequency", None)}
        name = getattr(embedder, "name", "?")
        for key, value in have.items():
            want = self.model.get(key)
            if json.loads(json.dumps(value)) != want:
                if key in ("checkpoint", "frontend"):
                    what, value = "another model", f"another {key}"
                else:
                    what, value = f"{key} {want!r}", repr(value)
                raise HeadError(
                    f"this head was trained on {describe(self.model)}, but the embedder is {name} with {key} "
                    f"{value}: it was trained on {what}. Load the model it was trained on "
                    f"(--model {self.model.get('name')} with --layer/--pooling/--frequency as above), or train a head "
                    "for this one with `audiorep probe ... --save-head DIR`.")
        dim = getattr(embedder, "scene_embedding_size", self.embedding_dim)
        if dim != self.embedding_dim:
            raise HeadError(f"the embedder gives {dim}-dim embeddings; this head takes {self.embedding_dim}.")

    # ------------------------------------------------------------------------------------------ disk
    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "std": self.std}
        for i, layer in enumerate(self.layers):
            for k, v in layer.items():
                out[f"layer{i}_{k}"] = v
            if i < len(self.stats):
                out[f"layer{i}_running_mean"] = self.stats[i]["mean"]
                out[f"layer{i}_running_var"] = self.stats[i]["var"]
        return out

    def to_json(self) -> dict:
        return {"format": HEAD_FORMAT, "classes": self.classes, "positive": self.positive,
                "multilabel": self.multilabel, "hidden_layers": len(self.stats), "embedding_dim": self.embedding_dim,
                "model": self.model,
                "info": {"audiorep_version": __version__, "date": _dt.date.today().isoformat()} | self.info}

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write head.npz then head.json into `folder` (each atomically: temp file + os.replace).

        Raises:
          HeadError: see `check_head_dir`.
        """
        folder = check_head_dir(folder, overwrite=overwrite)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "head.npz", lambda fh: np.savez(fh, **self.arrays()))
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        write_atomically(folder / "head.json", lambda fh: fh.write(text.encode()))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Head:
        """Read a head folder written by `save`.

        Raises:
          HeadError: no such folder, no head.json / head.npz in it, or files from a newer format.
        """
        folder = Path(folder).expanduser()
        if not (folder / "head.json").is_file() or not (folder / "head.npz").is_file():
            what = "does not exist" if not folder.exists() else "holds no head.json and head.npz"
            raise HeadError(f"head folder {folder} {what}; pass a folder written by `audiorep probe ... --save-head "
                            "DIR`.")
        try:
            meta = json.loads((folder / "head.json").read_text())
            with np.load(folder / "head.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise HeadError(f"head folder {folder}: cannot read it ({err}); save the head again with --save-head."
                            ) from err
        if meta.get("format") != HEAD_FORMAT:
            raise HeadError(f"head folder {folder} has format {meta.get('format')!r}; this audiorep reads format "
                            f"{HEAD_FORMAT}. Save the head again with this version.")
        n_hidden = int(meta["hidden_layers"])
        layers, stats = [], []
        for i in range(n_hidden + 1):
            keys = ("w", "b", "gamma", "beta") if i < n_hidden else ("w", "b")
            missing = [f"layer{i}_{k}" for k in keys if f"layer{i}_{k}" not in arrays]
            if missing:
                raise HeadError(f"head folder {folder}: head.npz lacks {missing}; save the head again.")
            layers.append({k: arrays[f"layer{i}_{k}"] for k in keys})
            if i < n_hidden:
                stats.append({"mean": arrays[f"layer{i}_running_mean"], "var": arrays[f"layer{i}_running_var"]})
        return cls(layers, stats, arrays["mean"], arrays["std"], list(meta["classes"]), meta["positive"],
                   bool(meta["multilabel"]), dict(meta["model"]), dict(meta.get("info", {})))


def describe(model: dict) -> str:
    """A head's model in a few words: name, checkpoint (short), layer, pooling, frequency."""
    return (f"{model.get('name')} (checkpoint {str(model.get('checkpoint'))[:12]}, layer {model.get('layer')!r}, "
            f"pooling {model.get('pooling')!r}, frequency {model.get('frequency')!r})")


def model_of(embedder) -> dict:
    """What a head records about the embeddings it is trained on (JSON-ready)."""
    bundle = getattr(embedder, "bundle", None)
    frontend = getattr(embedder, "frontend", None)
    model = {"name": str(getattr(embedder, "name", "model")),
             "checkpoint": getattr(bundle, "checkpoint_hash", None),
             "frontend": frontend.to_dict() if hasattr(frontend, "to_dict") else None,
             "layer": getattr(embedder, "layer", None), "pooling": getattr(embedder, "pooling", None),
             "frequency": getattr(embedder, "frequency", None), "sample_rate": getattr(embedder, "sample_rate", None)}
    return json.loads(json.dumps(model))


def check_head_dir(folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before any work, that `folder` can take a head: a new or empty folder, or (with `overwrite`) one that
    holds only a previous head. Returns it as a Path.

    Raises:
      HeadError: a file of that name, a folder with files in it (without `overwrite`, or files other than a head's),
        or a location that cannot be written.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise HeadError(f"--save-head {folder} is a file; give a folder path for the head.")
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        if present and not overwrite:
            raise HeadError(f"--save-head {folder} already exists and is not empty; choose a new folder, or pass "
                            "--force to replace the head in it.")
        others = [n for n in present if n not in FILES]
        if others:
            raise HeadError(f"--save-head {folder} holds other files ({', '.join(others[:3])}); --force only replaces "
                            "a previous head. Choose a new folder.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise HeadError(f"--save-head {folder} is not writable; choose a folder you can write.")
        return folder
    parent = nearest_existing(folder.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise HeadError(f"--save-head {folder}: {parent} is not a writable folder; choose a head folder you can "
                        "write.")
    return folder


__all__ = ["HEAD_FORMAT", "Head", "HeadError", "check_head_dir", "describe", "model_of"]
