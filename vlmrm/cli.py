"""Command line: ``vlmrm fit --config FILE [key=value ...]`` and friends."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from vlmrm.errors import VLMRMError


def _cmd_fit(args: argparse.Namespace) -> int:
    from vlmrm.config import load_config
    from vlmrm.train import fit

    cfg = load_config(args.config, args.overrides)
    fit(cfg, config_path=args.config)
    return 0


def _cmd_backends(args: argparse.Namespace) -> int:
    from vlmrm.registry import available_backends

    for entry in available_backends().values():
        cls = entry.load()
        print(f"{entry.name:<14} ({entry.source}: {entry.target})\n    model names: "
              f"{cls.model_naming}")
    print("ground_truth   (built-in: the env's own reward; no model)")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(
        prog="vlmrm", description="Train RL agents with vision-language models as reward models.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train an agent from a config file")
    fit.add_argument("--config", required=True, help="YAML config, e.g. configs/cartpole.yaml")
    fit.add_argument("overrides", nargs="*", metavar="key=value",
                     help="config overrides, e.g. agent.total_env_steps=2000")
    sub.add_parser("backends", help="list reward backends and how to name their models")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "fit": _cmd_fit,
        "backends": _cmd_backends,
    }
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except VLMRMError as err:
        print(f"vlmrm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
