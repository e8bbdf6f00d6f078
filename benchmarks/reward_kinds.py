"""Cost per env step of each reward-model kind at full size, random weights, on this machine.

Builds the published architectures from their configs, with random weights and locally
built tokenizers/processors (no download), loads each through its vlmrm backend and reward
model, and measures what one env step costs that model: GFLOP (``FlopCounterMode`` on the
model's own scoring, as ``benchmarks/throughput.py`` counts it), env steps/s scored on this
CPU (fp32 weights, one torch thread, passes of ``--steps`` consecutive steps of one episode;
also per CPU second of the process, which a machine shared with other work does not skew),
and parameters and weight memory. The figures in docs/choosing-a-reward-model.md come from

    python benchmarks/reward_kinds.py --json kinds.json

- embedding: open_clip ViT-B-32 (224 px), one image-encoder pass per frame;
- video: X-CLIP base patch32 (``XCLIPConfig()``: 8 frames, 224 px), one window per env step;
- judge: SmolVLM-256M's architecture (Idefics3: SigLIP base patch16 at 512 px, 4x pixel
  shuffle to 64 image tokens, a 30-layer 576-wide Llama; a word-level stand-in tokenizer, so
  the question is a few tokens shorter than SmolVLM's), one forward per frame and goal prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput_stages import gflop_per_env_step  # noqa: E402

from vlmrm.config import RewardConfig  # noqa: E402
from vlmrm.reward.seam import RewardModel, episode_windows  # noqa: E402
from vlmrm.run.build import make_backend, reward_model_for  # noqa: E402

GOAL, BASELINE = ["pole vertically upright on top of the cart"], ["pole and cart"]


def save_xclip(root: Path) -> str:
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    from vlmrm.backends.hf_clip_backend import clip_tokenizer

    config = XCLIPConfig()
    XCLIPModel(config).save_pretrained(root)
    images = VideoMAEImageProcessor(size={"shortest_edge": 224},
                                    crop_size={"height": 224, "width": 224})
    XCLIPProcessor(image_processor=images, tokenizer=clip_tokenizer(config)).save_pretrained(root)
    return str(root)


def save_smolvlm_256m(root: Path) -> str:
    import transformers as T

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.backends.fixtures import SMOL_TEMPLATE, word_tokenizer

    tok = word_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>",
                          "<global-img>", "<|im_start|>"])
    config = T.Idefics3Config(
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 512, "patch_size": 16},
        text_config={"model_type": "llama", "vocab_size": 49280, "hidden_size": 576,
                     "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3,
                     "max_position_embeddings": 8192, "tie_word_embeddings": True},
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=4)
    images = T.Idefics3ImageProcessor(size={"longest_edge": 512},
                                      max_image_size={"longest_edge": 512},
                                      do_image_splitting=False)
    processor = T.Idefics3Processor(images, tok, image_seq_len=64, chat_template=SMOL_TEMPLATE)
    T.Idefics3ForConditionalGeneration(config).save_pretrained(root)
    processor.save_pretrained(root)
    return str(root)


def measure(model: RewardModel, steps: int, repeats: int) -> dict[str, float]:
    size = model.image_size or (224, 224)
    frames = torch.randint(0, 256, (steps, *size, 3), dtype=torch.uint8)
    windows = episode_windows(frames, model.frames_needed)
    with torch.no_grad(), model.frozen():
        model.score(windows)  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            model.score(windows)
        seconds = (time.perf_counter() - start) / repeats
        cpu_seconds = (time.process_time() - cpu) / repeats
    params = sum(p.numel() for p in model.backend.model.parameters())
    return {"frames_per_reward": model.frames_needed,
            "gflop_per_env_step": round(gflop_per_env_step(model, frames), 2),
            "env_steps_per_s": round(steps / seconds, 3),
            # One thread: CPU time is the work itself, whatever else shares the machine.
            "env_steps_per_cpu_s": round(steps / cpu_seconds, 3),
            "params_millions": round(params / 1e6, 1),
            "weights_gib_fp32": round(params * 4 / 2**30, 3),
            "weights_gib_bf16": round(params * 2 / 2**30, 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="env steps per timed pass")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--only", default=None, help="measure the kinds whose name starts with this")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "embedding (open_clip ViT-B-32)": lambda: RewardConfig(
                backend="open_clip", model="ViT-B-32", pretrained=False),
            "video (X-CLIP base patch32, 8 frames)": lambda: RewardConfig(
                backend="xclip", model=save_xclip(Path(tmp) / "xclip")),
            "judge yes_no (SmolVLM-256M architecture)": lambda: RewardConfig(
                backend="hf_judge", model=save_smolvlm_256m(Path(tmp) / "smolvlm")),
        }
        for name, make in cases.items():
            if args.only and not name.startswith(args.only):
                continue
            cfg = make()
            cfg = RewardConfig(**{**cfg.__dict__, "goal_prompts": GOAL,
                                  "baseline_prompts": BASELINE, "batch_size": args.steps})
            model = reward_model_for(make_backend(cfg, "cpu"), cfg)
            results[name] = measure(model, args.steps, args.repeats)
            print(name, results[name], flush=True)
            del model
    results["_note"] = (f"CPU, fp32 weights, random weights, 1 torch thread, passes of "
                        f"{args.steps} env steps; {torch.__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
