"""Image textures for the textured MuJoCo scene: drawn here with numpy, or the user's own.

The paper's scene used three photographs: a cloudy blue sky, dark grey slate floor tiles and a
brushed white metal for the robot. We cannot ship those, so this module paints look-alikes
procedurally (seeded, so every process paints the same pictures) and caches them as PNG files
that the MJCF refers to. ``texture_dir`` lets a user supply their own pictures instead.

Files a ``texture_dir`` may hold (PNG; any missing one falls back to the painted default, but
at least one must be there):

=============  ==========================================================================
``sky.png``    sky box; square. MuJoCo puts the same picture on all six cube faces, top of
               the picture up; the horizon is the picture's middle row.
``floor.png``  floor tile pattern; any shape. One copy covers 2/3 m x 2/3 m of the floor
               (the paper's 60 repeats over the 40 m humanoid floor).
``body.png``   robot surface; square. Wrapped on every geom except planes.
=============  ==========================================================================
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vlmrm.fileio import atomic_path

#: Texture role -> the file name looked up in a ``texture_dir``.
TEXTURE_FILES = {"sky": "sky.png", "floor": "floor.png", "body": "body.png"}
SQUARE = ("sky", "body")  # MuJoCo cube/sky box textures from one picture must be square
#: Floor size one copy of the floor picture covers, in metres: the paper's texrepeat 60
#: over the 40 m humanoid floor.
FLOOR_PICTURE_M = 2 / 3
_VERSION = "v3"  # bump when the painters change, so cached PNGs are repainted


def texture_files(texture_dir: str | os.PathLike | None) -> dict[str, Path]:
    """PNG path per role: the user's file where ``texture_dir`` has one, else a painted one."""
    user = _user_textures(texture_dir) if texture_dir is not None else {}
    return {role: user.get(role) or painted(role) for role in TEXTURE_FILES}


def _user_textures(texture_dir: str | os.PathLike) -> dict[str, Path]:
    from vlmrm.errors import ConfigError

    # Absolute: MuJoCo would read a relative file name against the model's own folder.
    folder = Path(texture_dir).expanduser().resolve()
    if not str(texture_dir).strip() or not folder.is_dir():
        raise ConfigError(f"texture_dir={str(texture_dir)!r} is not a directory. Give a folder "
                          f"holding any of {', '.join(TEXTURE_FILES.values())}.")
    found = {role: folder / name for role, name in TEXTURE_FILES.items()
             if (folder / name).is_file()}
    if not found:
        present = sorted(p.name for p in folder.iterdir())[:12]
        raise ConfigError(f"texture_dir={str(texture_dir)!r} holds none of "
                          f"{', '.join(TEXTURE_FILES.values())} (it has: {present or 'nothing'}).")
    for role, path in found.items():
        _check_png(role, path)
    return found


def _check_png(role: str, path: Path) -> None:
    # MuJoCo's own messages for these cases name neither the option nor the fix.
    from vlmrm.errors import ConfigError

    try:
        with Image.open(path) as img:
            fmt, size = img.format, img.size
            img.verify()
    except Exception as exc:  # PIL raises several types for unreadable files
        raise ConfigError(f"texture_dir file {str(path)!r} is not a readable image: {exc}") from None
    if fmt != "PNG":
        raise ConfigError(f"texture_dir file {str(path)!r} is a {fmt} image; MuJoCo reads PNG only.")
    if role in SQUARE and size[0] != size[1]:
        raise ConfigError(f"texture_dir file {str(path)!r} is {size[0]}x{size[1]}; the {role} "
                          "picture must be square (MuJoCo puts it on the six faces of a cube).")


def painted(role: str) -> Path:
    """The cached PNG of the procedural ``role`` texture (painted on first use)."""
    folder = Path(tempfile.gettempdir()) / "vlmrm-scenes" / f"textures-{_VERSION}"
    path = folder / TEXTURE_FILES[role]
    if not path.exists():  # parallel env workers may paint it at the same time
        with atomic_path(path) as tmp:
            Image.fromarray(PAINTERS[role]()).save(tmp, format="PNG")
    return path


def periodic_noise(size: int, rng: np.random.Generator, scale: float,
                   stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Smooth noise in [0, 1] that tiles seamlessly (low-passed white noise, via the FFT).

    ``scale``: feature size in pixels; a ``stretch`` (rows, cols) above 1 lengthens features
    along that axis (it damps the noise's high frequencies there).
    """
    fy = np.fft.fftfreq(size)[:, None] * stretch[0]
    fx = np.fft.fftfreq(size)[None, :] * stretch[1]
    spectrum = np.fft.fft2(rng.standard_normal((size, size)))
    noise = np.fft.ifft2(spectrum * np.exp(-((fx**2 + fy**2) * scale**2))).real
    return (noise - noise.min()) / (np.ptp(noise) + 1e-12)


def _octaves(size: int, rng: np.random.Generator, scales: tuple[float, ...],
             stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    layers = [periodic_noise(size, rng, s, stretch) / (i + 1) for i, s in enumerate(scales)]
    total = sum(layers)
    return (total - total.min()) / np.ptp(total)


def paint_sky(size: int = 512) -> np.ndarray:
    """Blue sky, deep at the top and pale at the bottom, with soft white clouds."""
    rng = np.random.default_rng(1)
    rows = np.linspace(0.0, 1.0, size)[:, None, None]
    # The camera sees the band just above the middle row (the horizon): keep it deep blue.
    top, middle, bottom = np.array([20, 112, 200]), np.array([8, 142, 218]), np.array([150, 202, 240])
    blue = np.where(rows < 0.5, top + (middle - top) * rows * 2,
                    middle + (bottom - middle) * (rows - 0.5) * 2)
    # Clouds: wide, flat wisps (features longer than tall), a little denser low in the sky.
    cloud = _octaves(size, rng, (48.0, 16.0, 5.0), stretch=(1.0, 2.5))
    cover = np.clip((cloud - 0.56 + 0.1 * rows[..., 0]) / 0.3, 0, 1)[..., None] ** 1.5
    white = np.array([244, 248, 252])
    return np.clip(blue * (1 - cover) + white * cover, 0, 255).astype(np.uint8)


def _column_rows(rng: np.random.Generator, size: int) -> np.ndarray:
    """Tile boundaries down one column: mixed heights that fill the column exactly."""
    heights = []
    while sum(heights) < 1.0:
        heights.append(rng.choice([0.12, 0.2, 0.28, 0.36]))
    edges = np.cumsum(heights) / sum(heights) * size
    return np.round(edges).astype(int) % size


def paint_floor(size: int = 512) -> np.ndarray:
    """Dark grey slate: three columns of rectangular tiles of mixed heights, mottled, with
    thin joints. Seamless, so the floor repeats without visible seams."""
    rng = np.random.default_rng(2)
    mottle = _octaves(size, rng, (30.0, 9.0, 2.5))
    img = np.zeros((size, size))
    col_edges = [0, round(0.31 * size), round(0.64 * size), size]
    for left, right in zip(col_edges[:-1], col_edges[1:], strict=True):
        shift = int(rng.integers(size))
        edges = np.sort(_column_rows(rng, size))
        for top, bottom in zip(edges, np.roll(edges, -1), strict=True):
            rows = np.arange(top, bottom if bottom > top else bottom + size) % size
            tile = _slate_tile(rng, mottle, rows, np.arange(left, right))
            img[np.ix_((rows + shift) % size, np.arange(left, right))] = tile
            _joint(img, (top + shift) % size, left, right)
        img[:, left] = 24  # vertical joint
        img[:, (left + 1) % size] = 70  # a lit bevel beside it
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _slate_tile(rng: np.random.Generator, mottle: np.ndarray, rows: np.ndarray,
                cols: np.ndarray) -> np.ndarray:
    """One slate: its own shade, and its own patch of the mottling (so neighbours differ)."""
    base = rng.uniform(40, 66)
    oy, ox = rng.integers(mottle.shape[0], size=2)
    patch = mottle[np.ix_((rows + oy) % mottle.shape[0], (cols + ox) % mottle.shape[1])]
    tile = base + (patch - 0.5) * 42
    if rng.random() < 0.3:  # some slates have a fine ribbed finish
        tile = tile + 4 * np.sin(np.arange(len(rows)) * 2 * np.pi / 5)[:, None]
    return tile


def _joint(img: np.ndarray, row: int, left: int, right: int) -> None:
    img[row, left:right] = 24
    img[(row + 1) % img.shape[0], left:right] = 70


def paint_body(size: int = 256) -> np.ndarray:
    """Brushed white metal: near-white with faint diagonal streaks."""
    rng = np.random.default_rng(3)
    # Streaks: noise stretched along one axis, then sheared onto the diagonal.
    streaks = _octaves(size, rng, (1.5, 0.7), stretch=(1.0, 14.0))
    rows, cols = np.indices((size, size))
    diagonal = streaks[(rows + cols) % size, (cols - rows) % size]
    grey = 238 + (diagonal - 0.5) * 22
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


PAINTERS = {"sky": paint_sky, "floor": paint_floor, "body": paint_body}
