"""The built wheel installs `backends/` as `vlmrm.backends` and ships the demo model."""

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import ROOT


def test_wheel_maps_backends_and_ships_package_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True)
    (wheel,) = tmp_path.glob("vlmrm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("vlmrm/backends/openclip_backend.py", "vlmrm/backends/hf_clip_backend.py",
                     "vlmrm/backends/siglip_backend.py", "vlmrm/scenes/humanoid.py",
                     "vlmrm/demo/training.py", "vlmrm/assets/vlmrm-demo/open_clip_config.json",
                     "vlmrm/assets/vlmrm-demo/open_clip_model.safetensors"):
        assert expected in names, expected
    assert not any(n.startswith("backends/") for n in names)  # only under vlmrm/
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vlmrm = vlmrm.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_editable_install_imports_backends_from_the_top_level_folder():
    import vlmrm.backends.openclip_backend as module

    assert Path(module.__file__).resolve().parent == ROOT / "backends"
