"""Where each official timm ViT/DeiT tensor must land in our encoders, written from the official module layout
(independently of the converters' own tables), and the tiny official checkpoints, for the SSAST/AST and PaSST
converter tests."""

import functools
from pathlib import Path

import numpy as np

from audiorep.models.convert.common import load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


@functools.cache
def fixture(name: str) -> dict[str, np.ndarray]:
    """The checkpoint tests/fixtures/`name` as read by the built-in reader (cached: do not modify it)."""
    return load_checkpoint(FIXTURES / name, reader="builtin")


def fresh_fixture(name: str) -> dict[str, np.ndarray]:
    """A copy of `fixture(name)` that a test may change."""
    return {k: np.array(v) for k, v in fixture(name).items()}

LAYOUTS = {"same": lambda v: v, "linear": lambda v: v.T, "conv": lambda v: v.transpose(2, 3, 1, 0)}
"""How a torch tensor is laid out in our parameter: as is, a Linear weight [out, in], a Conv2d weight [O, I, H, W]."""


def marked(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Same keys and shapes; float tensor number i holds i * 100000 + 0, 1, 2, ... (exact in float32)."""
    out = {}
    for i, (k, v) in enumerate(sorted(sd.items())):
        if np.issubdtype(v.dtype, np.integer):
            out[k] = v
        else:
            out[k] = (i * 100000 + np.arange(v.size, dtype=np.float64)).reshape(v.shape).astype(np.float32)
    return out


def param_at(enc, path: str) -> np.ndarray:
    """The encoder parameter at a dotted path ('blocks.0.attn.qkv.kernel')."""
    node = enc
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return np.asarray(node[...])


def block_placement(prefix: str, depth: int) -> dict[str, tuple[str, str]]:
    """Official `{prefix}blocks.{i}.*` key -> (our parameter, layout)."""
    table = {}
    for i in range(depth):
        for n in ("norm1", "norm2"):
            table[f"{prefix}blocks.{i}.{n}.weight"] = (f"blocks.{i}.{n}.scale", "same")
            table[f"{prefix}blocks.{i}.{n}.bias"] = (f"blocks.{i}.{n}.bias", "same")
        for lin in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            table[f"{prefix}blocks.{i}.{lin}.weight"] = (f"blocks.{i}.{lin}.kernel", "linear")
            table[f"{prefix}blocks.{i}.{lin}.bias"] = (f"blocks.{i}.{lin}.bias", "same")
    return table


def trunk_placement(prefix: str, depth: int) -> dict[str, tuple[str, str]]:
    """Official keys of the DeiT trunk SSAST/AST and PaSST share (`{prefix}patch_embed.proj`, cls and dist tokens,
    blocks, final norm) -> (our parameter, layout)."""
    table = {
        f"{prefix}patch_embed.proj.weight": ("patch_embed.proj.kernel", "conv"),
        f"{prefix}patch_embed.proj.bias": ("patch_embed.proj.bias", "same"),
        f"{prefix}cls_token": ("cls_token", "same"),
        f"{prefix}dist_token": ("dist_token", "same"),
        f"{prefix}norm.weight": ("norm.scale", "same"),
        f"{prefix}norm.bias": ("norm.bias", "same"),
    }
    table.update(block_placement(prefix, depth))
    return table


def assert_placed(enc, sd: dict[str, np.ndarray], table: dict[str, tuple[str, str]], key_prefix: str = "") -> None:
    """Every official tensor `sd[key_prefix + key]` of `table` equals our parameter in its layout."""
    for key, (path, layout) in table.items():
        np.testing.assert_array_equal(param_at(enc, path), LAYOUTS[layout](sd[key_prefix + key]), err_msg=key)
