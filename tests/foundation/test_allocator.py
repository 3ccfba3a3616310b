"""carla_rl.contract.allocator: glibc's malloc thresholds are set where glibc is the C library, and the switch
turns it off."""

import platform
import sys

import pytest

from carla_rl.contract import allocator


def glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(allocator.TUNING_ENV, "0")
    assert allocator.tune_allocator() is False


@pytest.mark.skipif(not glibc(), reason="the settings exist in glibc only")
def test_glibc_accepts_both_settings(monkeypatch):
    monkeypatch.delenv(allocator.TUNING_ENV, raising=False)
    # True only if mallopt took both values
    assert allocator.tune_allocator() is True

