"""Default sharding with two real JAX processes (jax.distributed on localhost, one subprocess each)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from processes import free_port, run_together
from test_pipeline import write_clips

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 1)
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    from audiorep.data import pipeline as pl
    from audiorep.data.sources import read_dataset

    source = pl.records_source(read_dataset("folder", sys.argv[3]), 8000)
    train = [int(i) for b in pl.train_dataset(source, clip_samples=400, batch_size=1, seed=0, num_epochs=1)
             for i in b["index"]]
    steps = pl.eval_steps(source, chunk_samples=1000, batch_size=2)
    batches = list(pl.eval_dataset(source, chunk_samples=1000, batch_size=2, num_batches=steps))
    evaluated = sorted({int(i) for b in batches for i in b["index"] if i >= 0})
    print("RESULT " + json.dumps({"process": jax.process_index(), "train": train, "eval": evaluated,
                                  "eval_batches": len(batches)}), flush=True)
    jax.distributed.shutdown()
""")


@pytest.mark.slow
def test_two_jax_processes_read_disjoint_shards_that_cover_the_data(tmp_path):
    clips = write_clips(tmp_path / "clips", per_class=3)  # 9 clips: uneven across 2 processes
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "AUDIOREP_NO_TCMALLOC": "1"}
    address = f"127.0.0.1:{free_port()}"
    commands = [[sys.executable, "-c", WORKER, address, str(i), str(clips)] for i in range(2)]
    results = [json.loads(line[len("RESULT "):]) for line in run_together(commands, env, "RESULT ")]
    results.sort(key=lambda r: r["process"])
    assert [r["process"] for r in results] == [0, 1]
    train = [set(r["train"]) for r in results]
    assert len(results[0]["train"]) == len(results[1]["train"]) == 4  # equal shards, 1 of 9 left out
    assert not train[0] & train[1]
    evaluated = [set(r["eval"]) for r in results]
    assert not evaluated[0] & evaluated[1] and evaluated[0] | evaluated[1] == set(range(9))
    assert results[0]["eval_batches"] == results[1]["eval_batches"]  # lockstep even with unequal shards
