"""palaestra.heap: freed activations stay in the process (no page faults on every update)."""
import subprocess
import sys

import pytest

SCRIPT = r"""
import resource, sys, threading
import torch
torch.set_num_threads(1)  # as `palaestra learn` by default (and whenever it uses side threads)
from palaestra.heap import keep_freed_memory
if sys.argv[1] == "on":
    assert keep_freed_memory()

def work():  # an update's temporaries on a side thread: 4 MB blocks, made and freed
    for _ in range(30):
        a = torch.ones(1 << 20)
        b = a * 2.0
        del a, b

thread = threading.Thread(target=work)
thread.start(); thread.join()  # warm-up: the blocks are first touched here
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
thread = threading.Thread(target=work)
thread.start(); thread.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_blocks_are_reused_without_page_faults():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    off, on = faults("off"), faults("on")
    # 60 blocks of 1024 pages each: without the thresholds most are faulted in again
    assert on < 1000 < off, (on, off)
