"""The torch-free checkpoint reader and the key/shape checks shared by every converter."""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from audiorep.models.convert import common

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cases():
    return common.read_torch_zip(FIXTURES / "torch_reader_cases.pt"), np.load(FIXTURES / "torch_reader_cases.npz")


@pytest.mark.parametrize("name", ["f32_transposed", "f32_slice_offset", "f16", "bf16", "i64", "i32", "u8", "bool",
                                  "f64_scalar", "shared_a", "shared_b", "empty"])
def test_zip_reader_reproduces_torch_tensors(cases, name):
    got, expected = cases
    arr = got[name]
    assert arr.shape == expected[name].shape
    np.testing.assert_array_equal(np.asarray(arr, dtype=expected[name].dtype), expected[name])


def test_zip_reader_keeps_dtypes(cases):
    got, _ = cases
    assert {k: str(got[k].dtype) for k in ("f16", "bf16", "i64", "bool", "f64_scalar")} == dict(
        f16="float16", bf16="bfloat16", i64="int64", bool="bool", f64_scalar="float64")


def test_zip_reader_returns_plain_python_containers(cases):
    got, _ = cases
    assert got["nested"] == {"cfg": {"name": "x", "n": 3, "flag": True, "rate": 0.5, "none": None},
                             "list": [1, 2.5, "s"], "tuple": (1, 2), "bytes": b"\x00\xffab"}


def test_zip_reader_results_do_not_alias_the_shared_storage(cases):
    got, _ = cases
    a, b = got["shared_a"], got["shared_b"]
    a[3] = -1.0
    assert b[1] == 3.0


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _zip_with_pickle(path: Path, obj) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/version", "3\n")
    return path


def test_zip_reader_refuses_code_in_the_pickle(tmp_path):
    path = _zip_with_pickle(tmp_path / "evil.pt", {"model": _Evil()})
    with pytest.raises(common.CheckpointError, match="refusing to load"):
        common.read_torch_zip(path)


def test_zip_reader_reads_plain_containers_without_tensors(tmp_path):
    path = _zip_with_pickle(tmp_path / "plain.pt", {"a": [1, 2], "b": "x"})
    assert common.read_torch_zip(path) == {"a": [1, 2], "b": "x"}


def test_non_zip_file_error_says_to_install_torch(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(common.CheckpointError, match="audiorep\\[convert\\]"):
        common.read_torch_zip(path)


def _legacy_torch_file(path: Path) -> Path:
    """The first records of a pre-1.6 torch.save file: magic number, protocol version, sys info, then the object."""
    parts = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}, {"a": 1}]
    path.write_bytes(b"".join(pickle.dumps(p, protocol=2) for p in parts))
    return path


def test_legacy_checkpoint_gets_the_legacy_message_not_truncated(tmp_path):
    path = _legacy_torch_file(tmp_path / "legacy.pt")
    with pytest.raises(common.CheckpointError, match="legacy pre-1.6") as err:
        common.load_checkpoint(path, reader="builtin")
    assert "truncated" not in str(err.value)


def _cut(src: Path, out: Path, keep: int) -> Path:
    data = src.read_bytes()
    out.write_bytes(data[:keep])
    return out


@pytest.mark.parametrize("where", ["zip magic", "first header", "pickle", "middle", "central directory", "last byte"])
def test_truncated_zip_checkpoint_is_reported_as_truncated(tmp_path, where):
    src = FIXTURES / "torch_reader_cases.pt"
    size = src.stat().st_size
    keep = {"zip magic": 2, "first header": 20, "pickle": 100, "middle": size // 2, "central directory": size - 100,
            "last byte": size - 1}[where]
    path = _cut(src, tmp_path / "cut.pt", keep)
    with pytest.raises(common.CheckpointError) as err:
        common.load_checkpoint(path, reader="builtin")
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and f"found {keep:,} bytes" in msg
    assert "again" in msg and "legacy" not in msg and "install torch" not in msg.lower()


def test_empty_checkpoint_is_reported_as_truncated(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(common.CheckpointError, match="empty \\(0 bytes\\): truncated"):
        common.load_checkpoint(path, reader="builtin")


def test_truncated_zip_is_reported_before_torch_reads_it(tmp_path, monkeypatch):
    def torch_load(*args, **kwargs):
        raise RuntimeError("PytorchStreamReader failed finding central directory")

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=torch_load))
    path = _cut(FIXTURES / "torch_reader_cases.pt", tmp_path / "cut.pt", 1000)
    with pytest.raises(common.CheckpointError, match="truncated or corrupted: it starts as a PyTorch zip"):
        common.load_checkpoint(path, reader="torch")


def _data_offset(path: Path, name: str) -> int:
    """Byte offset of a zip record's data (after its local header, name and extra field)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_zip_record_with_a_bad_crc_is_reported_as_corrupted(tmp_path):
    src = FIXTURES / "torch_reader_cases.pt"
    with zipfile.ZipFile(src) as zf:
        record = next(n for n in zf.namelist() if "/data/" in n and zf.getinfo(n).file_size > 0)
    raw = bytearray(src.read_bytes())
    raw[_data_offset(src, record)] ^= 0xFF
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(raw))
    with pytest.raises(common.CheckpointError, match="truncated or corrupted \\(Bad CRC-32") as err:
        common.read_torch_zip(path)
    assert record in str(err.value) and "again" in str(err.value)


def test_bytes_missing_from_the_middle_are_reported_as_corrupted(tmp_path):
    src = FIXTURES / "torch_reader_cases.pt"
    raw = src.read_bytes()
    path = tmp_path / "gap.pt"
    path.write_bytes(raw[:200] + raw[1200:])
    with pytest.raises(common.CheckpointError, match="truncated or corrupted") as err:
        common.read_torch_zip(path)
    assert "legacy" not in str(err.value)


def test_a_web_page_saved_as_checkpoint_is_not_called_legacy(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(common.CheckpointError, match="not a PyTorch checkpoint: it starts with b'<!DOCTYPE"):
        common.read_torch_zip(path)


def test_missing_file_error_names_the_path(tmp_path):
    with pytest.raises(common.CheckpointError, match="no such file"):
        common.load_checkpoint(tmp_path / "nope.pt", reader="builtin")


def test_truncated_storage_is_reported(tmp_path):
    src = FIXTURES / "torch_reader_cases.pt"
    out = tmp_path / "broken.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if "/data/" in item.filename:
                data = data[: len(data) // 2 // 8 * 8]
            zout.writestr(item, data)
    with pytest.raises(common.CheckpointError, match="storage"):
        common.read_torch_zip(out)


def test_reader_choice_is_validated():
    with pytest.raises(ValueError, match="reader must be"):
        common.load_checkpoint(FIXTURES / "torch_reader_cases.pt", reader="pickle")


def test_detect_family_recognises_each_layout():
    assert common.detect_family(["patch_embedding.weight", "encoder.pos_conv.0.weight_v"]) == "beats"
    assert common.detect_family(["encoder.layers.0.fc1.weight", "quantize.embedding.weight"]) == "beats-tokenizer"
    assert common.detect_family(["module.v.pos_embed", "module.mask_embed"]) == "ssast"
    assert common.detect_family(["freq_new_pos_embed", "time_new_pos_embed"]) == "passt"
    assert common.detect_family(["foo.bar"]) is None


@pytest.mark.parametrize("family", ["PaSST", "SSAST/AST"])
def test_a_beats_file_given_to_a_state_dict_converter_is_named_as_beats(family):
    beats = FIXTURES / "beats_tiny.pt"
    with pytest.raises(common.CheckpointError, match=f"not a {family} state dict.*BEATs"):
        common.flat_state_dict(common.load_checkpoint(beats, reader="builtin"), str(beats), family=family)


def test_check_state_dict_lists_missing_unexpected_and_misshaped_keys():
    state = {"a": np.zeros((2, 3)), "b": np.zeros(4), "extra": np.zeros(1)}
    with pytest.raises(common.CheckpointError) as err:
        common.check_state_dict(state, {"a": (2, 3), "b": (5,), "c": (1,)}, family="beats")
    msg = str(err.value)
    assert "missing keys (1): c" in msg and "unexpected keys (1): extra" in msg and "b: file (4,) vs model (5,)" in msg


def test_check_state_dict_names_the_real_family():
    with pytest.raises(common.CheckpointError, match="SSAST checkpoint"):
        common.check_state_dict({"module.v.pos_embed": np.zeros(1), "module.mask_embed": np.zeros(1)},
                                {"patch_embedding.weight": (1,)}, family="beats")


def test_check_state_dict_accepts_an_exact_match_and_ignored_keys():
    common.check_state_dict({"a": np.zeros(2), "head": np.zeros(1)}, {"a": (2,)}, family="x", ignore=["head"])


def test_strip_prefix_only_touches_prefixed_keys():
    assert common.strip_prefix({"module.a": 1, "b": 2}, "module.") == {"a": 1, "b": 2}


def test_assign_params_is_all_or_nothing():
    lin = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    before = np.asarray(lin.kernel[...]).copy()
    with pytest.raises(common.CheckpointError, match="bias: model \\(3,\\) vs value \\(4,\\)"):
        common.assign_params(lin, {("kernel",): np.ones((2, 3)), ("bias",): np.ones(4)})
    np.testing.assert_array_equal(lin.kernel[...], before)


def test_assign_params_requires_every_parameter():
    lin = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(common.CheckpointError, match="bias: no value given"):
        common.assign_params(lin, {("kernel",): np.ones((2, 3))})
    common.assign_params(lin, {("kernel",): np.ones((2, 3)), ("bias",): np.arange(3.0)})
    np.testing.assert_array_equal(lin.bias[...], [0, 1, 2])


def test_torch_load_path_when_torch_is_installed():
    pytest.importorskip("torch")
    got = common.load_checkpoint(FIXTURES / "torch_reader_cases.pt", reader="torch")
    np.testing.assert_array_equal(got["i64"], np.load(FIXTURES / "torch_reader_cases.npz")["i64"])


def test_builtin_reader_on_a_bytes_pickle_protocol_2_roundtrip(tmp_path):
    buf = io.BytesIO()
    pickle.dump({"k": b"\x01\x02"}, buf, protocol=2)
    with zipfile.ZipFile(tmp_path / "b.pt", "w") as zf:
        zf.writestr("x/data.pkl", buf.getvalue())
    assert common.read_torch_zip(tmp_path / "b.pt") == {"k": b"\x01\x02"}


def test_build_with_params_fills_an_abstract_module_and_seeds_its_rng_streams():
    build = lambda: nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1)))
    values = {("layers", 0, "kernel"): np.ones((2, 3)), ("layers", 0, "bias"): np.arange(3.0)}
    model = common.build_with_params(build, values)
    np.testing.assert_array_equal(model.layers[0](np.ones((1, 2), np.float32)), [[2.0, 3.0, 4.0]])
    dropped = np.asarray(model.layers[1](np.ones((1000,), np.float32), deterministic=False))
    assert 0.3 < (dropped == 0).mean() < 0.7


def test_build_with_params_reports_a_forgotten_parameter():
    with pytest.raises(common.CheckpointError, match="bias: no value given"):
        common.build_with_params(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0)), {("kernel",): np.ones((2, 3))})


def test_zip_reader_honours_a_big_endian_byte_order_record(tmp_path, monkeypatch):
    """Rewrite the fixture as a big-endian machine would have saved it; the values must not change."""
    dtypes = {}
    original = common._WeightsUnpickler.persistent_load

    def spy(self, pid):
        dtypes[str(pid[2])] = pid[1].dtype
        return original(self, pid)

    monkeypatch.setattr(common._WeightsUnpickler, "persistent_load", spy)
    little = common.read_torch_zip(FIXTURES / "torch_reader_cases.pt")
    monkeypatch.setattr(common._WeightsUnpickler, "persistent_load", original)
    out = tmp_path / "big.pt"
    with zipfile.ZipFile(FIXTURES / "torch_reader_cases.pt") as zin, zipfile.ZipFile(out, "w") as zout:
        names = zin.namelist()
        prefix = next(n for n in names if n.endswith("data.pkl"))[: -len("data.pkl")]
        for name in names:
            data = zin.read(name)
            key = name[len(prefix + "data/"):] if name.startswith(prefix + "data/") else None
            if key in dtypes:
                dt = dtypes[key]
                data = np.frombuffer(data, dt.newbyteorder("<")).astype(dt.newbyteorder(">")).tobytes()
            if name == prefix + "byteorder":
                data = b"big"
            zout.writestr(name, data)
        if prefix + "byteorder" not in names:
            zout.writestr(prefix + "byteorder", b"big")
    big = common.read_torch_zip(out)
    for name in ("f32_transposed", "f16", "i64", "f64_scalar", "shared_b"):
        np.testing.assert_array_equal(big[name], little[name])
        assert big[name].dtype.isnative


def test_torch_reader_without_torch_says_how_to_get_it():
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(common.CheckpointError, match="audiorep\\[convert\\]"):
            common.load_checkpoint(FIXTURES / "torch_reader_cases.pt", reader="torch")
    else:
        pytest.skip("torch is installed here")
