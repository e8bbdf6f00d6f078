"""Shared fixtures: a tiny open_clip architecture built and saved locally (no hub needed)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

# The test plugin of *this* checkout, even when another checkout's copy is pip-installed
# (editable installs resolve after sys.path): here and in `python -m vlmrm` subprocesses.
PLUGIN_DIR = str(Path(__file__).resolve().parent / "plugin_pkg")
sys.path.insert(0, PLUGIN_DIR)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [PLUGIN_DIR, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
torch.set_num_threads(1)

TINY_OPENCLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16,
                   "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}


@dataclass(frozen=True)
class TinyModel:
    name: str  # architecture name, registered from config_path
    config_path: Path
    checkpoint: Path  # a state dict saved with torch.save

    @property
    def reference(self) -> str:
        """The reward.model value users would write for this checkpoint."""
        return f"{self.name}/{self.checkpoint}"

    def overrides(self) -> list[str]:
        return [f"reward.model={self.reference}", f"reward.model_config={self.config_path}"]


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """No hub and an empty cache, as on a fresh machine without network; returns a cache dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path / "empty_cache"


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory) -> TinyModel:
    import open_clip

    root = tmp_path_factory.mktemp("tiny_openclip")
    config_path = root / "vlmrm-test-tiny.json"
    config_path.write_text(json.dumps(TINY_OPENCLIP))
    open_clip.add_model_config(config_path)
    torch.manual_seed(0)
    model = open_clip.create_model("vlmrm-test-tiny", pretrained=None)
    checkpoint = root / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return TinyModel("vlmrm-test-tiny", config_path, checkpoint)
