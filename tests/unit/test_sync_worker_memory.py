"""The worker pins glibc's mmap threshold so large transient buffers go back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from sync._worker import pin_mmap_threshold

    libc = ctypes.CDLL("libc.so.6")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "pin":
        assert pin_mmap_threshold()
    big = bytearray(4 << 20)
    del big  # glibc now raises its threshold to 4 MiB unless it is pinned
    before = libc.mallinfo2().hblkhd
    blocks = [bytearray(1 << 20) for _ in range(8)]
    print((libc.mallinfo2().hblkhd - before) >> 20)
    """
)


def mapped_mib(mode: str) -> int:
    """MiB of eight fresh 1 MiB buffers that glibc mapped directly (given back on free)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_pinned_threshold_maps_large_buffers_after_a_large_free() -> None:
    assert mapped_mib("pin") == 8


def test_the_probe_sees_glibc_raise_the_threshold_without_the_pin() -> None:
    """The probe can tell: without the pin the same buffers come from the heap."""
    assert mapped_mib("default") == 0
