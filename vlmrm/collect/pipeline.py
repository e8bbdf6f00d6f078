"""The per-rank data pipeline: env -> collector -> reward model -> replay buffer.

None of this lives in the LightningModule's module tree: envs are ``nn.Module``s and
would otherwise land in checkpoints and DDP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import EnvBase

from vlmrm.collect.loop import Collection, Partial, Streamed
from vlmrm.collect.nonfinite import NonFiniteBatch, check_rewards
from vlmrm.keys import DONE, GT_REWARD, NEXT, PIXELS, REPLAY_KEYS, REWARD, SUCCESS, VLM_REWARD
from vlmrm.reward.seam import Scorer
from vlmrm.sac.schedule import crossed


def make_replay_buffer(size: int, device: torch.device) -> TensorDictReplayBuffer:
    """Storage only: the update draws minibatches of the size it is given
    (:mod:`vlmrm.sac.update`)."""
    return TensorDictReplayBuffer(storage=LazyTensorStorage(size, device=device))


#: What a :class:`Feed` gets of each scored batch (small: no pixels).
WATCHED = ((NEXT, REWARD), (NEXT, GT_REWARD), (NEXT, DONE), (NEXT, SUCCESS))


def top_frames(frames: torch.Tensor, rewards: torch.Tensor, k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest-reward frames ``[k, H, W, 3]`` (best first) and their rewards."""
    flat = rewards.reshape(-1)
    best = flat.topk(min(k, flat.numel())).indices
    return frames.reshape(-1, *frames.shape[-3:])[best.to(frames.device)].clone(), flat[best]


def for_replay(data: TensorDictBase) -> TensorDictBase:
    """States, actions and (VLM) rewards only: pixels and actor outputs are dropped."""
    return data.select(*REPLAY_KEYS).reshape(-1)


@dataclass
class EpisodeTracker:
    """Running per-env returns across collected batches; reports finished episodes.

    ``vlm_return`` is the reward model's own; where a ``mix`` adds state terms to it
    (``vlm_reward`` kept beside ``reward``), the return of what SAC learns from is
    ``mixed_return``."""

    num_envs: int
    _mixed: torch.Tensor = field(init=False)
    _vlm: torch.Tensor = field(init=False)
    _gt: torch.Tensor = field(init=False)
    _success: torch.Tensor = field(init=False)
    _length: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self._vlm, self._gt, self._success, self._length, self._mixed = (
            torch.zeros(self.num_envs) for _ in range(5))

    def update(self, data: TensorDictBase) -> dict[str, list[float]]:
        """``data`` is ``[num_envs, T]`` (or ``[T]``) with reward, gt_reward and done."""
        nxt = data.get(NEXT)
        if data.ndim == 1:
            nxt = nxt.unsqueeze(0)
        per_env = (self.num_envs, -1)
        mixed = nxt[REWARD].reshape(per_env) if VLM_REWARD in nxt.keys() else None
        vlm = nxt[REWARD if mixed is None else VLM_REWARD].reshape(per_env)
        gt = nxt[GT_REWARD].reshape(per_env)
        done = nxt[DONE].reshape(per_env)
        success = nxt.get(SUCCESS, None)
        success = None if success is None else success.reshape(per_env).float()
        out: dict[str, list[float]] = {"vlm_return": [], "gt_return": [], "length": [],
                                       "success_rate": [], "mixed_return": []}
        for t in range(done.shape[1]):
            self._vlm += vlm[:, t]
            if mixed is not None:
                self._mixed += mixed[:, t]
            self._gt += gt[:, t]
            self._length += 1
            if success is not None:
                self._success += success[:, t]
            ended = done[:, t]
            if ended.any():
                out["vlm_return"] += self._vlm[ended].tolist()
                out["gt_return"] += self._gt[ended].tolist()
                out["length"] += self._length[ended].tolist()
                if mixed is not None:
                    out["mixed_return"] += self._mixed[ended].tolist()
                if success is not None:
                    out["success_rate"] += (self._success[ended] / self._length[ended]).tolist()
                for acc in (self._vlm, self._gt, self._success, self._length, self._mixed):
                    acc[ended] = 0
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running sums of unfinished episodes (for an exact resume)."""
        return {"vlm": self._vlm.clone(), "gt": self._gt.clone(),
                "success": self._success.clone(), "length": self._length.clone(),
                "mixed": self._mixed.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._vlm, self._gt = state["vlm"].clone(), state["gt"].clone()
        self._success, self._length = state["success"].clone(), state["length"].clone()
        # Checkpoints from before mix existed have no mixed sums: those runs had no mix.
        self._mixed = state.get("mixed", torch.zeros_like(self._vlm)).clone()


@dataclass
class ScoredBatch:
    """One collected batch after scoring: on the collection thread when collection overlaps
    the learner, so everything the main thread needs of it travels here."""

    #: ``[num_envs, train_freq]``, ``reward`` the reward model's (the env's in gt_reward).
    batch: TensorDictBase
    collect_s: float
    score_s: float
    #: A non-finite reward found in it (the batch must then never be stored).
    problem: NonFiniteBatch | None = None
    #: What subscribers get (:meth:`DataPipeline.subscribe`), and each one's top frames.
    watched: TensorDictBase | None = None
    top: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None


@dataclass
class Feed:
    """A subscription to the scored batches (the reward monitor's): the main thread gets,
    per batch handed out, its rewards, ground truth and episode ends (``scored``), the
    episodes it finished once stored (``finished``), and ``keep_frames`` of its
    highest-reward frames with their rewards (``top``) from each batch that crosses a
    multiple of ``keep_frames_every`` env steps (all ranks counted). :meth:`take` empties it.
    """

    num_envs: int
    #: The picture the reward model sees of frames (:meth:`RewardModel.model_view`).
    model_view: Callable[[torch.Tensor], torch.Tensor]
    keep_frames: int = 0
    keep_frames_every: int = 0
    scored: TensorDictBase | None = None
    finished: dict[str, list[float]] | None = None
    top: tuple[torch.Tensor, torch.Tensor] | None = None

    def take(self) -> tuple[TensorDictBase | None, dict[str, list[float]] | None,
                            tuple[torch.Tensor, torch.Tensor] | None]:
        out = self.scored, self.finished, self.top
        self.scored = self.finished = self.top = None
        return out


@dataclass
class DataPipeline:
    """The data side of training for one rank.

    ``next_batch`` collects ``[num_envs, train_freq]`` env steps and scores them (the reward
    model's ``reward``, the env's own kept as ``gt_reward``) — with overlap, one batch ahead
    on the collection thread; ``accept`` hands a scored batch to the main thread; ``store``
    tracks episodes and fills the replay buffer. ``batches`` is a
    :class:`~vlmrm.collect.loop.Collection` (the env step loop), or any iterable of batches
    (tests script the data side this way).
    """

    batches: Collection | Iterable[TensorDictBase]
    #: The scoring seam: the reward model (None: the env's reward) and its frame history.
    scorer: Scorer
    replay_buffer: TensorDictReplayBuffer
    episodes: EpisodeTracker
    eval_env: EnvBase | None = None
    envs: list[EnvBase] = field(default_factory=list)
    #: Where the evidence of a non-finite reward goes (``<run dir>/nonfinite``); None: nowhere.
    evidence_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    #: Whether checkpoints capture the envs' state (:func:`vlmrm.envs.envstate.capture_blocker`);
    #: if not, a resume reseeds them from ``seed`` (the run's) and their episodes restart.
    exact_envs: bool = True
    seed: int = 0
    #: Env steps this rank has scored (names a bad batch by its step range).
    steps_scored: int = field(default=0, init=False)
    #: Subscriptions to the scored batches (:meth:`subscribe`).
    feeds: list[Feed] = field(default_factory=list, init=False)
    _iterator: Iterator[TensorDictBase] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.batches, Collection):
            self.batches.after = self.score_batch
        else:
            self._iterator = iter(self.batches)

    def next_batch(self, actor: torch.nn.Module, prefetch: bool = True) -> ScoredBatch | Partial:
        """The next scored batch (a :class:`~vlmrm.collect.loop.Partial` one once halted); see
        :meth:`Collection.next` for ``prefetch``."""
        if isinstance(self.batches, Collection):
            return self.batches.next(actor, prefetch)
        t0 = time.perf_counter()
        batch = next(self._iterator)
        return self.score_batch(batch, time.perf_counter() - t0)

    def batches_in_flight(self) -> bool:
        """Whether a batch is being collected (or is collected and not yet handed out)."""
        return isinstance(self.batches, Collection) and self.batches.holds_batch

    def halt(self) -> None:
        """Cut the collection and scoring in flight short, at the next env step or encoder
        pass: the batch is then kept as a partial one (a stop; see :mod:`vlmrm.interrupt`).
        Safe to call from a signal handler."""
        if isinstance(self.batches, Collection):
            self.batches.loop.halt.set()

    def hold(self, got: ScoredBatch) -> None:
        """Give back a batch :meth:`next_batch` handed out, unused: the next call hands it out
        again, and a checkpoint saves it (a DDP stop that cut another rank's batch short)."""
        self.batches.held = got

    def pause(self) -> None:
        """Let a batch in flight finish before the main thread uses the reward model (or
        the envs) itself; it is handed out by the next :meth:`next_batch`."""
        if isinstance(self.batches, Collection):
            self.batches.pause()

    def subscribe(self, keep_frames: int = 0, keep_frames_every: int = 0) -> Feed | None:
        """A :class:`Feed` of the scored batches from now on; None without a reward model
        (nothing is scored)."""
        model = self.scorer.model
        if model is None:
            return None
        feed = Feed(self.episodes.num_envs, model.model_view, keep_frames, keep_frames_every)
        self.feeds.append(feed)
        return feed

    def score_batch(self, batch: TensorDictBase, collect_s: float,
                    streamed: Streamed | None = None) -> ScoredBatch:
        """Rewards for the whole batch through the scoring seam (or from the embeddings
        ``streamed`` while it was collected), checked finite (a NaN or infinite reward is
        reported in ``problem``, with the frames saved to ``evidence_dir``)."""
        t0 = time.perf_counter()
        frames = batch.get((NEXT, PIXELS), None)  # held here: scoring drops them from the batch
        if streamed is None:
            scored, encode_s = self.scorer.score(batch), 0.0
        else:
            embeddings, encode_s = streamed
            scored = self.scorer.score_embeddings(batch, embeddings)
        first = self.steps_scored + 1
        self.steps_scored += scored.numel()
        out = ScoredBatch(scored, collect_s, 0.0)
        try:
            check_rewards(scored, (NEXT, REWARD), frames, first, self.rank, self.world_size,
                          self.evidence_dir)
        except NonFiniteBatch as problem:
            out.problem = problem
        if self.feeds:
            out.watched = scored.select(*WATCHED, strict=False).clone()
            out.top = [top_frames(frames, scored.get((NEXT, REWARD)), feed.keep_frames)
                       if frames is not None and self._keeps_frames(feed, first - 1,
                                                                    scored.numel())
                       else None for feed in self.feeds]
        # Streamed: the encoding ran beside the collection, so its seconds are the scoring
        # thread's busy time plus what is left here.
        out.score_s = encode_s + time.perf_counter() - t0
        return out

    def _keeps_frames(self, feed: Feed, scored_before: int, size: int) -> bool:
        """Whether the batch after ``scored_before`` of this rank's steps crosses a multiple
        of ``feed.keep_frames_every`` env steps of all ranks."""
        if not (feed.keep_frames and feed.keep_frames_every):
            return False
        before = scored_before * self.world_size
        return crossed(feed.keep_frames_every, before, before + size * self.world_size)

    def accept(self, got: ScoredBatch) -> TensorDictBase:
        """The scored batch for the main thread; raises its non-finite problem, if any."""
        if self.feeds and got.watched is None:  # a pending batch restored by a resume
            got.watched = got.batch.select(*WATCHED, strict=False).clone()
        for i, feed in enumerate(self.feeds):
            if got.watched is not None:
                feed.scored = got.watched
            top = None if got.top is None or i >= len(got.top) else got.top[i]
            if top is not None:
                feed.top = top
        if got.problem is not None:
            raise got.problem
        return got.batch

    def store(self, batch: TensorDictBase) -> dict[str, list[float]]:
        """Add a scored batch to the replay buffer; return the episodes it finished (also
        published to the feeds)."""
        finished = self.episodes.update(batch)
        self.replay_buffer.extend(for_replay(batch))
        for feed in self.feeds:
            feed.finished = finished
        return finished

    def close(self) -> None:
        if isinstance(self.batches, Collection):
            self.batches.close()  # first: the envs must not close under a batch in flight
        for env in [*self.envs, self.eval_env]:
            if env is not None and not env.is_closed:
                env.close()
