"""`vlmrm render`: the frames the reward model sees, in a grid, end to end with a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import CONFIGS
from vlmrm.cli import main

QUIET = ["trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "reward.precision=32"]


@pytest.mark.parametrize("config", ["humanoid_kneeling", "cartpole", "mountaincar"])
def test_render_writes_a_grid_of_what_the_model_sees(config, tiny_openclip, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["render", "--config", str(CONFIGS / f"{config}.yaml"), "--out", str(out),
                 "--steps", "4", "--stride", "2", *tiny_openclip.overrides(), *QUIET])
    assert code == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("frame")]
    assert len(lines) == 4 and all("reward" in x for x in lines)
    grid = np.asarray(Image.open(out).convert("RGB"))
    # 2 x 2 frames of the model's 64 x 64 input, each with a caption row beneath it.
    assert grid.shape[1] == 2 * (64 + 4) + 4 and grid.shape[0] > 2 * 64
    tile = grid[4:68, 4:68].astype(int)
    assert tile.std() > 5  # a picture, not a blank tile


def test_render_errors_leave_no_file(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["render", "--config", str(CONFIGS / "cartpole.yaml"), "--out", str(out),
                 "reward.model=NoSuchArch/x"])
    assert code == 2 and not out.exists()
    assert "NoSuchArch" in capsys.readouterr().err
