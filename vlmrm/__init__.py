"""vlmrm: vision-language models as zero-shot reward models for reinforcement learning."""

import os as _os

# Headless MuJoCo rendering unless the user chose a backend; must precede `import mujoco`.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
_os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

__version__ = "0.1.0"
