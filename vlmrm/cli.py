"""Command line: ``vlmrm fit --config FILE [key=value ...]`` and friends.

Each command imports its heavy libraries (torch, Lightning, TorchRL, model libraries) only
once its arguments and config are known to be good, so ``--help`` and config errors answer
at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from vlmrm.errors import ConfigError, VLMRMError


def _cmd_fit(args: argparse.Namespace) -> int:
    from vlmrm.config import load_config

    if args.resume is None:
        if args.config is None:
            raise ConfigError("vlmrm fit needs --config FILE (or --resume RUN_DIR to continue "
                              "a run), e.g. vlmrm fit --config configs/quickstart.yaml.")
        cfg, resume = load_config(args.config, args.overrides), None
    else:
        from vlmrm.run.resume import plan_resume

        resume = plan_resume(args.resume, args.config, args.overrides)
        cfg = resume.cfg
    from vlmrm.commands.fit import fit
    from vlmrm.interrupt import EXIT_INTERRUPTED

    result = fit(cfg, config_path=args.config, resume=resume)
    if result.primary:
        print(result.report())
    return EXIT_INTERRUPTED if result.interrupted else 0


def _cmd_backends(args: argparse.Namespace) -> int:
    from vlmrm.backends.registry import available_backends

    if args.check:
        return _check_model(*args.check, cache_dir=args.cache_dir,
                            pretrained=not args.random_weights)
    for entry in available_backends().values():
        try:
            cls = entry.load()
            naming, kind = cls.model_naming, cls.kind
        except Exception as err:  # a broken plugin must not hide the other backends
            naming, kind = f"(cannot be imported: {type(err).__name__}: {err})", "?"
        print(f"{entry.name:<14} kind {kind:<9} ({entry.source}: {entry.target})\n"
              f"    model names: {naming}")
    print("ground_truth   (built-in: the env's own reward; no model)")
    print("Check that a model loads here (cached or reachable): "
          "vlmrm backends --check BACKEND MODEL [--cache-dir DIR]")
    return 0


def _check_model(backend: str, model: str, cache_dir: str | None, pretrained: bool) -> int:
    """Load one model on CPU the way `fit` would and describe it."""
    from vlmrm.config import RewardConfig
    from vlmrm.run.build import make_backend

    cfg = RewardConfig(backend=backend, model=model, pretrained=pretrained, cache_dir=cache_dir)
    loaded = make_backend(cfg, "cpu")
    params = sum(p.numel() for p in loaded.model.parameters())
    print(f"ok: {backend} model {model!r} (kind {loaded.kind}): {_describe_inputs(loaded)}, "
          f"{params / 1e6:.1f}M parameters = {params * 4 / 2**30:.2f} GiB in fp32, "
          f"{params * 2 / 2**30:.2f} GiB in bf16/fp16")
    return 0


def _describe_inputs(loaded) -> str:
    """What the model reads: embedding width, input size and resizing, frames per video;
    a judge may have no embedding or fixed input size, so each part is optional."""
    parts = []
    if loaded.kind == "judge":  # no embedding: its context is what bounds its prompts
        parts.append(f"context {loaded.context_length} tokens")
    else:
        parts.append(f"embedding dim {loaded.embed_dim}")
    pre = getattr(loaded, "preprocessor", None)
    if pre is not None and hasattr(pre, "resize_mode"):
        parts.append(f"input {pre.size[0]}x{pre.size[1]} ({pre.resize_mode}, "
                     f"{pre.interpolation})")
    frames = getattr(loaded, "num_frames", None)
    if frames is not None:
        parts.append(f"{frames} frames per video (one reward per env step: the last "
                     f"{frames} frames)")
    return ", ".join(parts) or "no fixed input size"


def _cmd_render(args: argparse.Namespace) -> int:
    from vlmrm.commands.render import render
    from vlmrm.config import load_config

    cfg = load_config(args.config, args.overrides)
    rewards = render(cfg, args.out, steps=args.steps, stride=args.stride)
    for i, value in enumerate(rewards):
        print(f"frame {i:2d} (env step {(i + 1) * args.stride:4d}): reward {value:.4f}")
    print(f"wrote {args.out}")
    return 0


def _cmd_play(args: argparse.Namespace) -> int:
    from vlmrm.commands.play import play

    result = play(args.checkpoint, args.out, episodes=args.episodes, overrides=args.overrides)
    line = (f"episodes: {args.episodes}  mean VLM return: {result['vlm_return']:.4f}  "
            f"mean GT return: {result['gt_return']:.4f}")
    if "mixed_return" in result:  # a mix transform: the reward the agent learned from
        line += f"  mean mixed return: {result['mixed_return']:.4f}"
    if "success_rate" in result:
        line += f"  success rate: {result['success_rate']:.3f}"
    print(line)
    print(f"wrote {args.out}")
    return 0


def _add_render_play(sub) -> None:
    render = sub.add_parser("render", help="show random-policy frames as the reward model "
                            "sees them (after preprocessing), with their rewards")
    render.add_argument("--config", required=True, help="YAML config")
    render.add_argument("--out", required=True, help="PNG file to write, e.g. grid.png")
    render.add_argument("--steps", type=int, default=12, help="frames in the grid (12)")
    render.add_argument("--stride", type=int, default=5, help="env steps between frames (5)")
    render.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    play = sub.add_parser("play", help="run a saved agent, write a video, print its returns")
    play.add_argument("--checkpoint", required=True, help="e.g. runs/NAME/checkpoints/last.ckpt")
    play.add_argument("--out", required=True, help="video file to write: .mp4 or .gif")
    play.add_argument("--episodes", type=int, default=1, help="episodes to run (1)")
    play.add_argument("overrides", nargs="*", metavar="key=value",
                      help="overrides of the saved config, e.g. reward.device=cuda")


def _cmd_evaluate_reward(args: argparse.Namespace) -> int:
    from vlmrm.config import load_config
    from vlmrm.evaluation import options
    from vlmrm.evaluation.frameset import read_frameset

    cfg = load_config(args.config, args.overrides)
    specs = options.parse_backend_specs(args.backends, cfg.reward)
    alphas = options.parse_alphas(args.alphas)
    out = options.check_out_dir(args.out)
    frameset = None if args.frames is None else read_frameset(args.frames)
    from vlmrm.commands.evaluate_reward import evaluate_reward
    from vlmrm.evaluation.report import report

    summary = evaluate_reward(cfg, out, specs, alphas, frameset, args.prompt_check)
    print(report(summary, out))
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from vlmrm.config import load_config
    from vlmrm.evaluation import options

    options.check_dataset_source(args.config, args.checkpoint)
    options.check_out_dir(args.out)
    options.check_positive("--episodes", args.episodes)
    options.check_positive("--stride", args.stride)
    cfg = None if args.config is None else load_config(args.config, args.overrides)
    from vlmrm.commands.dataset import write_dataset

    print(write_dataset(args.out, args.episodes, args.stride, cfg=cfg,
                        checkpoint=args.checkpoint, overrides=args.overrides))
    return 0


def _add_evaluation(sub) -> None:
    from vlmrm.evaluation.options import DEFAULT_ALPHAS

    ev = sub.add_parser(
        "evaluate-reward", help="compare reward models on a scene without training: reward "
        "landscapes, labelled frames, a prompt check (CSV, JSON, PNG plots)",
        description="Score the scene's goal-variable sweep (CartPole pole angle, MountainCar "
        "position), and/or a labelled frame set, with every model x formula x alpha; write "
        "summary.json, CSVs and plots to a new folder.")
    ev.add_argument("--config", required=True, help="YAML config (prompts, scene, reward "
                    "settings)")
    ev.add_argument("--out", required=True, help="new (or empty) folder for the outputs")
    ev.add_argument("--backends", default=None, metavar="SPEC,...",
                    help="models to compare, of any kind, comma-separated BACKEND:MODEL items, "
                    "e.g. open_clip:vlmrm-demo,xclip:microsoft/xclip-base-patch32,"
                    "hf_judge:/path/to/judge; 'config' is the config's own model (the "
                    "default). reward.window goes to video models, reward.question to judges")
    ev.add_argument("--alphas", default=DEFAULT_ALPHAS,
                    help=f"goal-baseline alphas to sweep, comma-separated ({DEFAULT_ALPHAS})")
    ev.add_argument("--frames", default=None, metavar="DIR",
                    help="a labelled frame set: PNGs plus labels.csv with 'file' and 'success' "
                    "(0/1) and/or 'score' columns (what `vlmrm dataset` writes)")
    ev.add_argument("--prompt-check", action="store_true",
                    help="only the prompt check (goal prompt vs a negated and an unrelated "
                    "prompt, on the same frames): no metrics, CSVs or plots")
    ev.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    ds = sub.add_parser(
        "dataset", help="write a labelled frame set (PNGs + labels.csv) from random or "
        "trained-policy rollouts, labelled by the env's ground truth, for people to relabel")
    ds.add_argument("--config", default=None, help="YAML config (random policy); not with "
                    "--checkpoint, which carries its run's config")
    ds.add_argument("--out", required=True, help="new (or empty) folder to write")
    ds.add_argument("--checkpoint", default=None, help="a run's .ckpt: its agent acts "
                    "(deterministically) instead of a random policy")
    ds.add_argument("--episodes", type=int, default=5, help="episodes to record (5)")
    ds.add_argument("--stride", type=int, default=1, help="keep every S-th step (1)")
    ds.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def _cmd_train_demo_model(args: argparse.Namespace) -> int:
    import torch

    from vlmrm.backends.openclip_backend import OpenCLIPBackend
    from vlmrm.demo import quality, training

    torch.set_num_threads(args.threads)
    settings = training.TrainSettings(seed=args.seed, samples=args.samples, steps=args.steps)
    model, summary = training.train(settings)
    out = training.export(model, Path(args.out), summary)
    metrics = quality.held_out_metrics(OpenCLIPBackend(f"local-dir:{out}"))
    training.record_metrics(out, metrics)
    print(f"wrote {out}: {metrics}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(
        prog="vlmrm", description="Train RL agents with vision-language models as reward models.")
    sub = parser.add_subparsers(dest="command", required=True)
    from vlmrm.config import describe_schema
    from vlmrm.demo.settings import TrainSettings
    from vlmrm.reward.spec import describe_formulas

    fit = sub.add_parser("fit", help="train an agent from a config file",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="config keys (defaults from vlmrm/config/schema.py):\n"
                         + describe_schema() + "\n\nreward formulas (reward.transform items, "
                         "registered with vlmrm.reward.spec.register_formula):\n"
                         + describe_formulas())
    fit.add_argument("--config", default=None,
                     help="YAML config, e.g. configs/cartpole.yaml (optional with --resume)")
    fit.add_argument("--resume", default=None, metavar="RUN_DIR|last",
                     help="continue a stopped run exactly where its newest checkpoint left it "
                          "(RUN_DIR, or 'last': the newest run of --config); overrides may "
                          "change only run length, intervals and logging")
    fit.add_argument("overrides", nargs="*", metavar="key=value",
                     help="config overrides, e.g. agent.total_env_steps=2000")
    backends = sub.add_parser("backends", help="list reward backends, their kinds and how to "
                              "name their models")
    backends.add_argument("--check", nargs=2, metavar=("BACKEND", "MODEL"),
                          help="load MODEL with BACKEND on CPU (from cache, or the hub if "
                               "reachable) and print its size")
    backends.add_argument("--cache-dir", default=None, help="as reward.cache_dir")
    backends.add_argument("--random-weights", action="store_true",
                          help="as reward.pretrained=false")
    _add_render_play(sub)
    _add_evaluation(sub)
    demo = sub.add_parser("train-demo-model",
                          help="retrain the bundled demo reward model (vlmrm-demo)")
    demo.add_argument("--out", default="vlmrm/assets/vlmrm-demo", help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    defaults = TrainSettings()
    demo.add_argument("--samples", type=int, default=defaults.samples)
    demo.add_argument("--steps", type=int, default=defaults.steps)
    demo.add_argument("--threads", type=int, default=2, help="torch threads")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "train-demo-model": _cmd_train_demo_model,
        "fit": _cmd_fit,
        "backends": _cmd_backends,
        "render": _cmd_render,
        "play": _cmd_play,
        "evaluate-reward": _cmd_evaluate_reward,
        "dataset": _cmd_dataset,
    }
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except VLMRMError as err:
        print(f"vlmrm: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C during fit, or Ctrl-C in another command
        print("vlmrm: interrupted at once; a run resumes from its newest checkpoint "
              "(vlmrm fit --resume RUN_DIR).", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
