"""Train the bundled demo reward model: a small open_clip CLIP that knows the classic scenes.

Contrastive training with soft targets: a caption's target weight for an image falls with the
distance between the states behind them (pole angle, car position), so similarity to a
caption varies smoothly with the state instead of jumping between caption buckets.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.demo import scenes_data
from vlmrm.demo.settings import TrainSettings

DEMO_NAME = "vlmrm-demo"
MODEL_CFG = {
    "embed_dim": 64,
    # A small ResNet tower: its convolutions pick up a 1-2 pixel pole that a ViT trained
    # from scratch on this little data ignores.
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 3, "mlp_ratio": 2.0},
}
# Frames are squashed, not centre-cropped, so the whole track stays in view.
PREPROCESS_CFG = {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                  "interpolation": "bicubic", "resize_mode": "squash"}
ANGLE_SCALE = 0.8  # radians; soft-target width for CartPole
POSITION_SCALE = 0.6  # track units; wide enough to rank the far-left hill below the valley


def _print(message: str) -> None:
    print(message, flush=True)


def preprocessor() -> ImagePreprocessor:
    c = PREPROCESS_CFG
    return ImagePreprocessor(size=(c["size"], c["size"]), mean=tuple(c["mean"]),
                             std=tuple(c["std"]), interpolation=c["interpolation"],
                             resize_mode=c["resize_mode"])


def build_model(seed: int):
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**MODEL_CFG)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"][
        "context_length"])
    return model, tokenizer


def soft_targets(scene: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Row-normalised target weights between every image and every caption of a batch."""
    diff = state[:, None] - state[None, :]
    angle = torch.atan2(torch.sin(diff), torch.cos(diff)) / ANGLE_SCALE
    dist = torch.where(scene[:, None] == 0, angle, diff / POSITION_SCALE)
    logits = -dist.square()
    logits = logits.masked_fill(scene[:, None] != scene[None, :], -math.inf)
    return logits.softmax(dim=1)


def train(settings: TrainSettings, log: Callable[[str], None] = _print
          ) -> tuple[torch.nn.Module, dict]:
    """Render data, train, and return the model with its training summary."""
    torch.manual_seed(settings.seed)
    pre = preprocessor()
    renderer = scenes_data.SceneRenderer(pre)
    t0 = time.perf_counter()
    data = scenes_data.make_samples(renderer, settings.samples, settings.seed)
    renderer.close()
    log(f"rendered {settings.samples} states in {time.perf_counter() - t0:.0f}s")
    model, tokenizer = build_model(settings.seed)
    tokens = tokenizer(data.captions)
    pixels = pre(data.frames)  # the whole set fits in memory at 64x64
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.learning_rate,
                                                   total_steps=settings.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(settings.seed)
    model.train()
    for step in range(settings.steps):
        idx = torch.randint(0, settings.samples, (settings.batch_size,), generator=gen)
        loss = _loss(model, pixels[idx], tokens[idx], data.scene[idx], data.state[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == settings.steps - 1:
            log(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - t0:.0f}s")
    model.eval()
    return model, {"train_seconds": round(time.perf_counter() - t0), **vars(settings)}


def _loss(model, pixels, tokens, scene, state) -> torch.Tensor:
    image = F.normalize(model.encode_image(pixels), dim=-1)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * image @ text.T
    targets = soft_targets(scene, state)
    # Image->text and text->image cross-entropy against the soft targets (symmetric CLIP loss).
    return 0.5 * (-(targets * logits.log_softmax(1)).sum(1).mean()
                  - (targets.T * logits.T.log_softmax(1)).sum(1).mean())


def export(model: torch.nn.Module, out_dir: Path, summary: dict) -> Path:
    """Write open_clip's ``local-dir:`` layout: config JSON and fp16 safetensors weights."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG,
              "vlmrm_training": summary}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    return out_dir


def record_metrics(out_dir: Path, metrics: dict[str, float]) -> None:
    """Store the held-out metrics in the model's config, next to its training summary."""
    path = out_dir / "open_clip_config.json"
    config = json.loads(path.read_text())
    config["vlmrm_training"]["held_out"] = metrics
    path.write_text(json.dumps(config, indent=2) + "\n")
