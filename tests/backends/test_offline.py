"""Every backend, offline with an empty cache: one clear message at once, exit code 2."""

from __future__ import annotations

import time

import pytest

from tests.helpers import BACKENDS
from vlmrm.cli import main

UNCACHED = {
    "open_clip": "ViT-B-32/laion2b_s34b_b79k",
    "hf_clip": "openai/clip-vit-base-patch32",
    "siglip": "google/siglip-so400m-patch14-384",
    "xclip": "microsoft/xclip-base-patch32",
    "toy": "toy-model-v1",
    "hf_judge": "HuggingFaceTB/SmolVLM-256M-Instruct",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_uncached_model_offline_exits_2_with_one_clear_message(backend, offline, capsys):
    model = UNCACHED[backend]
    start = time.perf_counter()
    code = main(["backends", "--check", backend, model, "--cache-dir", str(offline)])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("vlmrm: error: ") and "Traceback" not in err
    assert repr(model) in err and str(offline) in err  # model and where it was looked for
    assert "download it with:" in err and "HF_HOME" in err and "HF_HUB_OFFLINE" in err
    assert elapsed < 15, f"took {elapsed:.1f}s: something retried the network"


