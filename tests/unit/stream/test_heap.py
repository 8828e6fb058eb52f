"""glibc heap settings: freed tensor-sized blocks are reused instead of page-faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream.heap import glibc

PROGRAM = """
import resource, sys
import numpy as np
from stream.heap import keep_freed_tensor_memory
(getattr(np, "_core", None) or np.core).multiarray._set_madvise_hugepage(False)  # huge pages: fewer faults
if sys.argv[1] == "tuned":
    assert keep_freed_tensor_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds = []
for _ in range(3):
    f0 = faults()
    blocks = [np.ones(1_700_000, dtype=np.float32) for _ in range(8)]  # 6.8 MB each, like a (512, 50, 64) tensor
    del blocks
    rounds.append(faults() - f0)
print(rounds[1] + rounds[2])
"""


def minor_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(glibc() is None or "LD_PRELOAD" in os.environ, reason="glibc's own malloc")
def test_freed_blocks_are_reused_once_tuned() -> None:
    default, tuned = minor_faults("default"), minor_faults("tuned")
    # 8 blocks of 6.8 MB are ~13,000 4 KiB pages: by default most of them fault in again every round
    assert default > 10 * max(tuned, 10), (default, tuned)
