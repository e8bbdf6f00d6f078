"""benchmarks/sac_update.py, which the throughput benchmark calls: it runs, reports every
variant with ratios, and says how to install Stable-Baselines3 when it is missing."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sac_update",
                                                  ROOT / "benchmarks" / "sac_update.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_update_rates_of_vlmrm_variants(bench):
    rates = bench.update_rates(4, 2, (16,), 32, discrete=True, sb3=False, rounds=2, updates=2)
    assert set(rates) == {"torchrl", "fast"}
    for result in rates.values():
        assert result["updates_per_s"] > 0 and len(result["rounds"]) == 2
    assert rates["torchrl"]["ratio_vs_torchrl"] == 1.0


def test_update_rates_against_stable_baselines3(bench):
    pytest.importorskip("stable_baselines3")
    rates = bench.update_rates(3, 1, (16,), 32, sb3=True, rounds=1, updates=2, bound=2.0)
    assert set(rates) == {"sb3", "torchrl", "fast"}
    assert rates["sb3"]["ratio_vs_sb3"] == 1.0 and rates["fast"]["ratio_vs_sb3"] > 0


def test_missing_stable_baselines3_names_the_bench_extra(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install vlmrm\[bench\]"):
        bench.sb3_update_rate(3, 1, (16,), 32)
