"""SAC updates/s: vlmrm's update (agent.loss_impl fast / torchrl, eager / compiled) against
Stable-Baselines3's ``SAC.train()`` on the same network sizes and batch, in one process.

Every variant gets the same random replay data and is timed in interleaved rounds (the
order rotates each round, so load drifting on a shared machine hits all alike); reported are
the median updates/s over rounds and the median of the per-round ratios.

Like for like with SB3's ``MlpPolicy``: ReLU MLPs, twin critics and targets, MSE critic loss,
learned entropy coefficient (init 1), Adam lr 3e-4, tau 0.005, gamma 0.99, one torch thread.
vlmrm runs its library code (``vlmrm.sac.update``: the loss, the replay sampling from a TorchRL
buffer, the optimizer, the target update and the one host read per iteration) with plain
``Tensor.backward`` and the optimizer in place of Lightning's thin wrappers around them.
SB3 has no discrete SAC: for discrete sizes its continuous SAC with as many action
dimensions as there are actions stands in.

    python benchmarks/sac_update.py                      # Pendulum, Humanoid, CartPole sizes
    python benchmarks/sac_update.py --compile --rounds 7 # also the compiled fast update
    python benchmarks/sac_update.py --sizes humanoid --json out.json

Needs ``pip install vlmrm[bench]`` (Stable-Baselines3) for the SB3 column.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from tensordict import TensorDict
from torchrl.data import Bounded, OneHot

from vlmrm.collect.pipeline import make_replay_buffer
from vlmrm.config import Config
from vlmrm.sac.agent import make_agent, make_loss
from vlmrm.sac.update import make_optimizer, make_update

#: name -> (obs_dim, act_dim, batch, discrete, action bound)
SIZES = {"pendulum": (3, 1, 256, False, 2.0), "humanoid": (348, 17, 512, False, 0.4),
         "cartpole": (4, 2, 256, True, 1.0)}
#: Updates per variant per round, by batch size (about 1-3 s per round on one CPU core).
UPDATES = {256: 60, 512: 20}
LR, TAU, GAMMA = 3e-4, 0.005, 0.99
SB3_MISSING = ("Stable-Baselines3 is not installed: pip install vlmrm[bench] "
               "(or pip install stable-baselines3)")

Variant = Callable[[int], None]


def random_transitions(n: int, obs_dim: int, act_dim: int, discrete: bool, bound: float,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if discrete:
        action = torch.nn.functional.one_hot(torch.randint(act_dim, (n,), generator=g), act_dim)
    else:
        action = (torch.rand(n, act_dim, generator=g) * 2 - 1) * bound
    return {"observation": torch.randn(n, obs_dim, generator=g), "action": action,
            "next_observation": torch.randn(n, obs_dim, generator=g),
            "reward": torch.randn(n, 1, generator=g),
            "terminated": torch.rand(n, 1, generator=g) < 0.01}


def vlmrm_variant(obs_dim: int, act_dim: int, hidden: Sequence[int], batch: int,
                  discrete: bool, loss_impl: str = "fast", compile: bool = False,
                  data: dict[str, torch.Tensor] | None = None, bound: float = 1.0,
                  activation: str = "relu", critic_loss: str = "l2",
                  device: str = "cpu") -> Variant:
    """k updates of vlmrm's update path on ``device``, returning once the losses are read
    (one sync)."""
    cfg = Config().agent
    cfg.activation, cfg.critic_loss, cfg.learning_rate = activation, critic_loss, LR
    cfg.tau, cfg.gamma, cfg.loss_impl, cfg.compile = TAU, GAMMA, loss_impl, compile
    spec = OneHot(act_dim) if discrete else Bounded(-bound, bound, shape=(act_dim,))
    actor, q = make_agent(obs_dim, spec, list(hidden), activation)
    where = torch.device(device)
    # Moved before the updater and optimizer take their references to the parameters.
    loss = make_loss(actor, q, spec, cfg).to(where)
    data = data or random_transitions(20_000, obs_dim, act_dim, discrete, bound)
    n = len(data["observation"])
    buffer = make_replay_buffer(n, where)
    buffer.extend(TensorDict({
        "observation": data["observation"], "action": data["action"],
        "next": {"observation": data["next_observation"], "reward": data["reward"],
                 "done": data["terminated"], "terminated": data["terminated"]}}, [n]))
    updater = make_update(loss, loss_impl, TAU, torch.Generator().manual_seed(0), compile)
    optimizer = make_optimizer(loss, LR, loss_impl)

    def run(k: int) -> None:
        totals = updater.run(buffer, k, where, torch.Tensor.backward, optimizer, batch_size=batch)
        torch.stack(list(totals.values())).tolist()  # SACModule.update's one read
    return run


def sb3_variant(obs_dim: int, act_dim: int, hidden: Sequence[int], batch: int,
                data: dict[str, torch.Tensor] | None = None, bound: float = 1.0,
                device: str = "cpu") -> Variant:
    """k updates of Stable-Baselines3's SAC (``model.train(gradient_steps=k)``) on ``device``."""
    try:
        import gymnasium as gym
        import numpy as np
        from stable_baselines3 import SAC
        from stable_baselines3.common.logger import configure
    except ImportError as err:
        raise ImportError(SB3_MISSING) from err

    env = _DummyEnv(gym, np, obs_dim, act_dim, bound)
    data = data or random_transitions(20_000, obs_dim, act_dim, False, bound)
    n = len(data["observation"])
    model = SAC("MlpPolicy", env, buffer_size=n, batch_size=batch, learning_starts=0,
                learning_rate=LR, tau=TAU, gamma=GAMMA, device=device, seed=0, verbose=0,
                policy_kwargs={"net_arch": list(hidden)})
    model.set_logger(configure(None, []))
    rb = model.replay_buffer  # [buffer_size, n_envs, ...]; `dones` is the terminal flag
    rb.observations[:n, 0] = data["observation"].numpy()
    rb.next_observations[:n, 0] = data["next_observation"].numpy()
    rb.actions[:n, 0] = data["action"].float().numpy()
    rb.rewards[:n, 0] = data["reward"].squeeze(-1).numpy()
    rb.dones[:n, 0] = data["terminated"].squeeze(-1).float().numpy()
    rb.pos, rb.full = 0, True
    return lambda k: model.train(gradient_steps=k, batch_size=batch)


def _DummyEnv(gym, np, obs_dim: int, act_dim: int, bound: float):
    """An env with SB3's spaces; never stepped (the buffer is filled directly)."""

    class DummyEnv(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-bound, bound, (act_dim,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(obs_dim, np.float32), {}

        def step(self, action):
            return np.zeros(obs_dim, np.float32), 0.0, False, False, {}

    return DummyEnv()


def interleaved(variants: dict[str, Variant], k: int, rounds: int
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Updates per wall-clock second and per CPU second of this process, of each variant
    per round; each round runs every variant once, k updates, in an order rotated by one per
    round. One warm-up call each first (compiles). CPU time barely moves when other jobs
    load the machine (all variants run one thread); wall time is what a run pays."""
    for run in variants.values():
        run(2)
    names = list(variants)
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[name](k)
            wall[name].append(k / (time.perf_counter() - start))
            cpu[name].append(k / max(time.process_time() - start_cpu, 1e-9))
    return wall, cpu


def summarise(wall: dict[str, list[float]], cpu: dict[str, list[float]], reference: str
              ) -> dict[str, dict]:
    """Per variant: median updates/s (wall and CPU) and the median per-round ratio of each
    to ``reference``."""
    def ratio(rates: dict[str, list[float]], name: str) -> float:
        return statistics.median(v / ref for v, ref in zip(rates[name], rates[reference],
                                                           strict=True))

    return {name: {"updates_per_s": statistics.median(wall[name]),
                   f"ratio_vs_{reference}": ratio(wall, name),
                   "updates_per_cpu_s": statistics.median(cpu[name]),
                   f"cpu_ratio_vs_{reference}": ratio(cpu, name),
                   "rounds": [round(v, 1) for v in wall[name]]} for name in wall}


def update_rates(obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 batch: int = 256, discrete: bool = False, compile: bool = False, *,
                 sb3: bool = True, rounds: int = 5, updates: int | None = None,
                 bound: float = 1.0, threads: int | None = 1, activation: str = "relu",
                 critic_loss: str = "l2", device: str = "cpu") -> dict[str, dict]:
    """Updates/s of vlmrm's ``fast`` and ``torchrl`` updates (and the compiled fast one if
    ``compile``), and of SB3's SAC if ``sb3`` (ImportError naming ``vlmrm[bench]`` when it
    is missing), measured interleaved in this process. ``{variant: {"updates_per_s",
    "ratio_vs_<reference>", "updates_per_cpu_s", "cpu_ratio_vs_<reference>", "rounds"}}``;
    the reference is ``sb3`` if present, else ``torchrl``. For discrete sizes SB3's continuous
    SAC with ``act_dim`` dimensions stands in (it has no discrete SAC). ``activation`` and
    ``critic_loss`` apply to vlmrm's variants (the defaults match SB3's MlpPolicy); every
    variant runs on ``device``."""
    if threads is not None:
        torch.set_num_threads(threads)
    data = random_transitions(20_000, obs_dim, act_dim, discrete, bound)
    variants: dict[str, Variant] = {}
    if sb3:
        variants["sb3"] = sb3_variant(obs_dim, act_dim, hidden, batch, data, bound, device)
    kwargs = {"data": data, "bound": bound, "activation": activation,
              "critic_loss": critic_loss, "device": device}
    variants["torchrl"] = vlmrm_variant(obs_dim, act_dim, hidden, batch, discrete, "torchrl",
                                        **kwargs)
    variants["fast"] = vlmrm_variant(obs_dim, act_dim, hidden, batch, discrete, "fast",
                                     **kwargs)
    if compile:
        variants["fast+compile"] = vlmrm_variant(obs_dim, act_dim, hidden, batch, discrete,
                                                 "fast", compile=True, **kwargs)
    k = updates or UPDATES.get(batch, max(1, 15_360 // batch))
    return summarise(*interleaved(variants, k, rounds), "sb3" if sb3 else "torchrl")


def sb3_update_rate(obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                    batch: int = 256, *, rounds: int = 5, updates: int | None = None,
                    bound: float = 1.0) -> float:
    """Median updates/s of SB3's SAC alone (ImportError naming ``vlmrm[bench]`` without it)."""
    run = sb3_variant(obs_dim, act_dim, hidden, batch, bound=bound)
    k = updates or UPDATES.get(batch, max(1, 15_360 // batch))
    return statistics.median(interleaved({"sb3": run}, k, rounds)[0]["sb3"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="pendulum,humanoid,cartpole",
                   help=f"comma list of {list(SIZES)}")
    p.add_argument("--compile", action="store_true", help="also the compiled fast update")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--updates", type=int, default=None, help="updates per variant per round")
    p.add_argument("--no-sb3", action="store_true", help="vlmrm's variants only")
    p.add_argument("--device", default="cpu", help="where every variant runs (cpu, cuda)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", module="torchrl")
    results = {"torch": torch.__version__, "threads": 1, "device": args.device,
               "argv": sys.argv[1:]}
    for name in args.sizes.split(","):
        obs_dim, act_dim, batch, discrete, bound = SIZES[name]
        print(f"== {name}: obs {obs_dim}, {'actions' if discrete else 'act'} {act_dim}, "
              f"hidden [256, 256], batch {batch}", flush=True)
        res = update_rates(obs_dim, act_dim, (256, 256), batch, discrete, args.compile,
                           sb3=not args.no_sb3, rounds=args.rounds, updates=args.updates,
                           bound=bound, device=args.device)
        results[name] = res
        ref = "sb3" if "sb3" in res else "torchrl"
        print(f"  {'variant':14s} {'updates/s':>9s} {'x ' + ref:>9s} {'per CPU s':>10s} "
              f"{'x ' + ref:>9s}  rounds (updates/s)")
        for variant, r in res.items():
            print(f"  {variant:14s} {r['updates_per_s']:9.1f} {r[f'ratio_vs_{ref}']:9.2f} "
                  f"{r['updates_per_cpu_s']:10.1f} {r[f'cpu_ratio_vs_{ref}']:9.2f}  "
                  f"{r['rounds']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
