"""`fmnist-pl build-kernels`: the kernels it builds are the ones a compare's first run then finds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_cli import run_cli

# A compare in its own process (nothing compiled in memory), on the same on-disk cache: after its
# fit, Keras RMSprop's background compile is done; torch's counters say whether inductor compiled
# the kernel (a miss) or found it (a hit).
COMPARE = """
import sys
from pathlib import Path
import torch._dynamo.utils as utils
from fmnist_pl.config import CompareConfig
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.optim.keras_rmsprop import wait_for_compiles
from fmnist_pl.run.compare import compare

data, out = Path(sys.argv[1]), Path(sys.argv[2])
config = CompareConfig(epochs=1, hidden=(32, 16), optimizers=("sgd", "rmsprop"), output_dir=str(out), name="c",
                       val_size=100, limit_train_batches=5, progress=False, accelerator="cpu")
compare(config, arrays=load_arrays(data, counts=None), echo=lambda _: None)
wait_for_compiles()
inductor = utils.counters["inductor"]
print(inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"])
"""


def test_a_compare_after_build_kernels_finds_its_kernel_in_the_cache(tmp_path, fake_data):
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    built = run_cli("build-kernels", "--hidden", "32,16", "--optimizers", "sgd,rmsprop", "--accelerator", "cpu",
                    cwd=tmp_path, env=env)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("rmsprop (hidden 32,16, 2 run(s) in lockstep): kernel ready (")

    compared = subprocess.run([sys.executable, "-c", COMPARE, str(fake_data), str(tmp_path / "out")], env=env,
                              capture_output=True, text=True, timeout=600)
    assert compared.returncode == 0, compared.stderr
    hits, misses = map(int, compared.stdout.split()[-2:])
    # Built on the group's own views and gradient slices: the same kernel key, so nothing compiles.
    assert (hits, misses) == (1, 0)


def test_build_kernels_without_a_compiled_optimizer_builds_nothing(tmp_path):
    done = run_cli("build-kernels", "--optimizers", "sgd,adam", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nothing to build: none of these runs trains with a compiled kernel on this device\n"
    assert not list(Path(tmp_path).iterdir())  # nothing written where it ran


def test_build_kernels_bad_input_is_one_line_exit_2(tmp_path):
    done = run_cli("build-kernels", "--optimizers", "sgd,nope", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown optimizer 'nope'; choose from: sgd,")
    assert done.stderr.count("\n") == 1
