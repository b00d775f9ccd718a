"""train.compute_dtype='bfloat16' must make the encoder's matmuls bf16 (fp32 master weights stay fp32).

Before the fix the f32 input features promoted every matmul of a bf16-parameter model back to f32, so the
"bf16" step computed in f32 and could never be faster than the fp32 one.
"""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.models.ast import ASTConfig, ASTEncoder
from audiorep.models.beats import BEATS_TINY, BEATsEncoder
from audiorep.models.passt import PaSSTConfig, PaSSTEncoder
from audiorep.pretrain import objectives, trainer


def _setup(family: str):
    """(model, objective, batch) with a tiny encoder of `family` and the objective it is trained with."""
    rng = np.random.default_rng(0)
    if family == "ast":
        model = ASTEncoder(ASTConfig.preset("ssast-patch-tiny"), rngs=nnx.Rngs(0))
        obj = objectives.MSPM(get_frontend("ssast"), masked=20, mask="cluster", frames=256)
        batch = {"audio": rng.normal(size=(2, 41_000)).astype(np.float32) * 0.1}
    elif family == "beats":
        model = BEATsEncoder(BEATS_TINY, rngs=nnx.Rngs(0))
        head = jnp.asarray(rng.normal(size=(BEATS_TINY.encoder_embed_dim, 3)).astype(np.float32))

        def obj(m, batch, key):  # no BEATs SSL objective yet: a fixed linear head on the mean token
            feats = objectives.fit_frames(get_frontend("beats")(batch["audio"]), 256)
            logits = m(feats).tokens.mean(1).astype(jnp.float32) @ head
            return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0]), {}

        batch = {"audio": rng.normal(size=(2, 41_000)).astype(np.float32) * 0.1}
    else:
        model = PaSSTEncoder(PaSSTConfig.preset("passt-s-tiny").replace(num_classes=4), rngs=nnx.Rngs(0))
        obj = objectives.Supervised(get_frontend("passt"), num_classes=4, multilabel=False, drop_t=6, drop_f=2,
                                    frames=298)
        batch = {"audio": rng.normal(size=(2, 96_000)).astype(np.float32) * 0.1, "label": np.array([1, 3])}
    return model, obj, jax.tree.map(jnp.asarray, batch)


def _step(model, obj, compute_dtype: str):
    cfg = trainer.default_train_config()
    cfg.train.compute_dtype = compute_dtype
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, sched = trainer.make_optimizer(cfg.optim, 100, params)
    state = dict(params=params, rest=rest, opt=tx.init(params), step=jnp.zeros((), jnp.int32),
                 key=jax.random.PRNGKey(0))
    return trainer.build_step(graphdef, obj, tx, sched, cfg), state


def _matmul_dtypes(fn, *args) -> collections.Counter:
    """Output dtypes of every dot_general / convolution in the jaxpr of fn(*args) (nested jaxprs included)."""
    counts = collections.Counter()
    for line in str(jax.make_jaxpr(fn)(*args)).splitlines():
        if "dot_general" in line or "conv_general_dilated" in line:
            m = re.search(r":(\w+)\[", line)  # the output's dtype: `name:bf16[...] = dot_general ...`
            counts[m.group(1) if m else "?"] += 1
    return counts


@pytest.mark.parametrize("family", ["ast", "beats", "passt"])
def test_bf16_compute_runs_the_encoder_matmuls_in_bf16(family):
    model, obj, batch = _setup(family)
    step, state = _step(model, obj, "bfloat16")
    counts = _matmul_dtypes(step, state, batch)
    # The frontend's own matmuls (mel filterbank, DFT) stay f32 by design; everything else is bf16.
    f32 = counts.get("f32", 0)
    assert counts.get("bf16", 0) > 0, counts
    assert f32 <= 4, f"{f32} f32 matmuls in a bf16 step ({dict(counts)})"
    new, metrics = jax.jit(step)(state, batch)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new["params"]))  # fp32 master weights
    # bf16 and fp32 steps compute the same loss up to bf16 rounding
    step32, state32 = _step(*_setup(family)[:2], "float32")
    _, m32 = jax.jit(step32)(state32, batch)
    assert float(metrics["loss"]) == pytest.approx(float(m32["loss"]), rel=0.05)
