"""``utils.malloc.retain_freed_memory``: after it, a process reuses freed tensor memory instead of page-faulting
it in again (measured in fresh subprocesses, so the setting does not leak into the other tests)."""
import os
import subprocess
import sys

import pytest

from video_iared.utils import malloc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A chain of growing buffers, each freed once the next exists (the pattern of a forward pass whose
# activations grow and die), repeated; prints the minor page faults of the repetitions after the first.
_PROBE = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from video_iared.utils.malloc import retain_freed_memory
    print(retain_freed_memory(), file=sys.stderr)
def chain():
    a = None
    for i in range(1, 13):
        b = torch.ones(i * 600_000)
        a = b
    del a, b
chain()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    chain()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    # glibc's own allocator with its defaults: no preloaded allocator, no MALLOC_*_ tuning from outside
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env,
                         check=True, cwd=REPO)
    if mode == "retain":
        assert "refused" not in out.stderr and "set" in out.stderr, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(malloc._glibc() is None, reason="mallopt settings exist only in glibc")
@pytest.mark.slow
def test_retained_memory_is_reused_without_page_faults():
    default, retained = _faults("default"), _faults("retain")
    # measured here over repeated runs: 46,874-169,076 faults with glibc's defaults, 0-13,476 retained (the
    # retained count depends on where the heap lands in the address space)
    assert default > 5000, f"the probe should page-fault with glibc's defaults (got {default})"
    assert retained * 2 < default, f"retained {retained} vs default {default} page faults"


def test_without_glibc_nothing_is_set(monkeypatch):
    monkeypatch.setattr(malloc, "_glibc", lambda: None)
    assert "not applied" in malloc.retain_freed_memory()
