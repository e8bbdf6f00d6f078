"""Labelled frame sets: a folder of PNG frames plus ``labels.csv``.

Format (what ``vlmrm dataset`` writes and ``vlmrm evaluate-reward --frames`` reads)::

    my_set/
      labels.csv
      ep000-t0001.png
      ...

``labels.csv`` is a CSV file with a header row and one row per frame:

- ``file`` (required): the PNG's path relative to the folder;
- ``success`` (optional): ``1`` where the frame shows the goal achieved, ``0`` where not
  (``true``/``false`` also read);
- ``score`` (optional): any number, higher = closer to the goal (e.g. a human rating or the
  env's ground-truth reward);
- ``episode`` and ``step`` (optional, both or neither; ``vlmrm dataset`` writes them): the
  episode a frame comes from and its env step. A model that scores a window of frames (a
  video model) then sees each frame with the set's earlier frames of the same episode
  (``vlmrm dataset --stride 1`` keeps every step, so the windows are the model's own);
  without them each frame is a still picture, repeated to fill the window;
- any other column is ignored.

At least one of ``success`` and ``score`` must be present, with a value in every row. To
relabel, edit those columns (in a spreadsheet, say) and keep the header names.

Torch-free: the CLI checks a set's labels before loading any model.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmrm.errors import VLMRMError
from vlmrm.fileio import atomic_dir, write_text

LABELS = "labels.csv"
FILE, SUCCESS, SCORE = "file", "success", "score"
EPISODE, STEP = "episode", "step"
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


@dataclass(frozen=True)
class FrameSet:
    """A checked frame set: PNG paths and their labels (``None`` where a column is absent)."""

    root: Path
    files: list[Path]
    success: np.ndarray | None  # bool [N]
    score: np.ndarray | None  # float64 [N]
    episode: list[str] | None = None
    step: np.ndarray | None = None  # int64 [N]

    def episode_starts(self) -> tuple[list[int], list[bool]] | None:
        """The frames in (episode, step) order and where each episode begins there; None
        without the columns."""
        if self.episode is None:
            return None
        order = sorted(range(len(self)), key=lambda i: (self.episode[i], int(self.step[i])))
        starts = [j == 0 or self.episode[i] != self.episode[order[j - 1]]
                  for j, i in enumerate(order)]
        return order, starts

    def __len__(self) -> int:
        return len(self.files)

    def load_frames(self) -> list[np.ndarray]:
        """uint8 ``[H, W, 3]`` frames in label order (RGB; alpha dropped)."""
        from PIL import Image

        frames = []
        for path in self.files:
            try:
                with Image.open(path) as img:
                    frames.append(np.asarray(img.convert("RGB")))
            except OSError as err:
                raise VLMRMError(f"Frame {str(path)!r} listed in {LABELS} cannot be read as an "
                                 f"image ({err}). Replace it or remove its row.") from None
        return frames


def read_frameset(root: str | os.PathLike) -> FrameSet:
    """Check ``root/labels.csv`` and that every listed PNG exists; VLMRMError naming the
    row and column of the first problem."""
    root = Path(root)
    labels = root / LABELS
    if not labels.is_file():
        raise VLMRMError(f"--frames {str(root)!r} has no {LABELS}. A frame set is a folder of "
                         f"PNGs plus {LABELS} with a 'file' column and a 'success' (0/1) and/or "
                         "'score' (number) column; `vlmrm dataset` writes one.")
    with labels.open(newline="") as f:
        rows = list(csv.DictReader(f))
    header = set(rows[0]) if rows else set()
    where = str(labels)
    if FILE not in header or not ({SUCCESS, SCORE} & header):
        raise VLMRMError(f"{where} needs a 'file' column and at least one of 'success' (0/1) "
                         f"and 'score' (a number); its columns are {sorted(header) or 'none'}.")
    if len(rows) < 3:
        raise VLMRMError(f"{where} lists {len(rows)} frames; metrics need at least 3.")
    files = [_frame_path(root, row[FILE], where, i) for i, row in enumerate(rows, start=2)]
    success = score = None
    if SUCCESS in header:
        success = np.array([_flag(row[SUCCESS], where, i) for i, row in enumerate(rows, 2)])
    if SCORE in header:
        score = np.array([_number(row[SCORE], where, i) for i, row in enumerate(rows, 2)])
    episode = step = None
    if {EPISODE, STEP} <= header:
        episode = [(row[EPISODE] or "").strip() for row in rows]
        step = np.array([_step(row[STEP], where, i) for i, row in enumerate(rows, 2)])
    return FrameSet(root, files, success, score, episode, step)


def _step(value: str | None, where: str, line: int) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        raise VLMRMError(f"{where} line {line}: step={value!r} must be a whole number (the "
                         "frame's env step in its episode), or remove the step column."
                         ) from None


def _frame_path(root: Path, name: str | None, where: str, line: int) -> Path:
    path = root / (name or "").strip()
    if not name or not name.strip() or not path.is_file():
        raise VLMRMError(f"{where} line {line}: file {name!r} is not a file in {str(root)!r}. "
                         "Paths are relative to the frame set's folder.")
    return path


def _flag(value: str | None, where: str, line: int) -> bool:
    text = (value or "").strip().lower()
    if text not in _TRUE + _FALSE:
        raise VLMRMError(f"{where} line {line}: success={value!r} must be 1 or 0 (or true / "
                         "false).")
    return text in _TRUE


def _number(value: str | None, where: str, line: int) -> float:
    try:
        number = float((value or "").strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise VLMRMError(f"{where} line {line}: score={value!r} must be a finite number.")
    return number


def labels_csv(rows: Sequence[dict[str, object]]) -> str:
    """CSV text of ``rows`` (dicts with the same keys, ``file`` first)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_frameset(out: str | os.PathLike,
                   items: Iterable[tuple[np.ndarray, dict[str, object]]]) -> list[dict[str, object]]:
    """Write each ``(frame, row)`` as PNG ``row["file"]``, then the rows as ``labels.csv``;
    frames are written as they come (episodes need not fit in memory). ``out`` (new or empty)
    appears complete or not at all. Returns the rows."""
    from PIL import Image

    rows = []
    with atomic_dir(out) as tmp:
        for frame, row in items:
            Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(tmp / str(row[FILE]))
            rows.append(row)
        if not rows:
            raise VLMRMError("No frames to write: the rollouts produced none.")
        write_text(tmp / LABELS, labels_csv(rows))
    return rows
