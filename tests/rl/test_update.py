"""The fast SAC update against its oracle, TorchRL's losses, and its parts: the batched
replay sampler, the one-kernel target update, foreach Adam and the compile fallback."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, OneHot, TensorSpec
from torchrl.objectives import LossModule, SoftUpdate

from vlmrm import compiled
from vlmrm.collect.pipeline import make_replay_buffer
from vlmrm.config import Config
from vlmrm.sac import update
from vlmrm.sac.agent import make_agent, make_loss
from vlmrm.sac.fast_loss import OUTPUTS, FastSACLoss, Minibatch
from vlmrm.sac.update import ReplaySampler, TargetUpdate, make_optimizer

PENDULUM = Bounded(-2.0, 2.0, shape=(1,))       # the box is rescaled from (-1, 1)
UNIT_BOX = Bounded(-1.0, 1.0, shape=(6,))       # TorchRL skips the rescaling here
CARTPOLE = OneHot(2)


def sac_loss(obs_dim: int, spec: TensorSpec, activation: str = "relu",
             critic_loss: str = "l2", ent_coef: str = "auto",
             hidden: tuple[int, ...] = (64, 64)) -> LossModule:
    """vlmrm's TorchRL loss, with target critics moved away from the critics (as after
    some training) so that a mix-up of the two would show."""
    cfg = Config().agent
    cfg.activation, cfg.critic_loss, cfg.ent_coef = activation, critic_loss, ent_coef
    torch.manual_seed(0)
    actor, q = make_agent(obs_dim, spec, list(hidden), activation)
    loss = make_loss(actor, q, spec, cfg)
    with torch.no_grad():
        for t in loss.target_qvalue_network_params.values(True, True):
            t.add_(0.05 * torch.randn_like(t))
    return loss


def transitions(obs_dim: int, spec: TensorSpec, n: int, seed: int = 1) -> TensorDict:
    """Random replay transitions in vlmrm's layout (a tenth terminated)."""
    g = torch.Generator().manual_seed(seed)
    if isinstance(spec, OneHot):
        k = spec.shape[-1]
        action = torch.nn.functional.one_hot(torch.randint(k, (n,), generator=g), k).bool()
    else:
        low, high = spec.space.low, spec.space.high
        action = torch.rand(n, spec.shape[-1], generator=g) * (high - low) + low
    return TensorDict({
        "observation": torch.randn(n, obs_dim, generator=g), "action": action,
        "next": {"observation": torch.randn(n, obs_dim, generator=g),
                 "reward": torch.randn(n, 1, generator=g),
                 "done": torch.rand(n, 1, generator=g) < 0.1,
                 "terminated": torch.rand(n, 1, generator=g) < 0.1}}, [n])


def losses_and_grads(loss_fn, batch, params: list[torch.Tensor]
                     ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor | None]]:
    """One forward from a fixed RNG state (the actor's noise), one backward of the sum."""
    torch.manual_seed(5)
    out = loss_fn(batch)
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return {k: out[k].detach() for k in OUTPUTS}, grads


def assert_same_as_torchrl(loss: LossModule, batch: TensorDict, **fast_kwargs) -> None:
    params = list(loss.parameters())
    theirs, their_grads = losses_and_grads(lambda td: loss(td.clone()), batch, params)
    fast = FastSACLoss(loss, **fast_kwargs)
    ours, our_grads = losses_and_grads(fast, Minibatch.from_tensordict(batch), params)
    for key in OUTPUTS:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-6, atol=1e-7, msg=key)
    for p, g_ours, g_theirs in zip(params, our_grads, their_grads, strict=True):
        assert (g_ours is None) == (g_theirs is None)  # fixed alpha: no log_alpha gradient
        if g_theirs is not None:
            err = (g_ours - g_theirs).abs().max() / g_theirs.abs().max().clamp_min(1e-12)
            assert err <= 1e-6, f"gradient of a {tuple(p.shape)} tensor off by {err:.1e}"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("critic_loss", ["l2", "smooth_l1"])
@pytest.mark.parametrize("ent_coef", ["auto", "0.2"])
@pytest.mark.parametrize("spec, obs_dim, share_obs", [
    (PENDULUM, 3, True), (PENDULUM, 3, False), (UNIT_BOX, 17, True), (CARTPOLE, 4, None)],
    ids=["box-shared-obs", "box", "unit-box-shared-obs", "discrete"])
def test_fast_loss_equals_torchrl_loss_values_and_gradients(spec, obs_dim, share_obs,
                                                            activation, critic_loss, ent_coef):
    loss = sac_loss(obs_dim, spec, activation, critic_loss, ent_coef)
    assert_same_as_torchrl(loss, transitions(obs_dim, spec, 128), share_obs=share_obs)


def test_fast_loss_handles_linear_networks():
    """agent.hidden_sizes=[]: one Linear layer, no activation."""
    for spec, obs_dim in ((PENDULUM, 3), (CARTPOLE, 4)):
        loss = sac_loss(obs_dim, spec, hidden=())
        assert_same_as_torchrl(loss, transitions(obs_dim, spec, 64))


def test_bool_free_variants_equal_the_eager_ops():
    """What the compiled loss runs (ReLU with a float backward, torch.minimum) gives
    TorchRL's values and gradients too."""
    for spec, obs_dim in ((PENDULUM, 3), (CARTPOLE, 4)):
        assert_same_as_torchrl(sac_loss(obs_dim, spec), transitions(obs_dim, spec, 128),
                               bool_free=True)


def test_replay_sampler_indices_are_in_range_and_reproducible():
    def draw(seed: int) -> torch.Tensor:
        return ReplaySampler(torch.Generator().manual_seed(seed)).indices(37, 4, 256)

    idx = draw(3)
    assert idx.shape == (4 * 256,) and idx.min() >= 0 and idx.max() < 37
    assert idx.unique().numel() == 37  # uniform over what is stored: every one drawn
    assert torch.equal(idx, draw(3))
    assert not torch.equal(idx, draw(4))
    assert update.replay_seed(0, 0) != update.replay_seed(0, 1)  # each DDP rank its own


def test_replay_sampler_gathers_k_minibatches_from_the_buffer():
    stored = transitions(3, PENDULUM, 50)
    buffer = make_replay_buffer(1000, torch.device("cpu"))
    buffer.extend(stored)
    gen = torch.Generator().manual_seed(7)
    batch = ReplaySampler(gen).sample(buffer, 3, 8, torch.device("cpu"))
    idx = ReplaySampler(torch.Generator().manual_seed(7)).indices(50, 3, 8).reshape(3, 8)
    expected = Minibatch.from_tensordict(stored[idx])
    assert batch.observation.shape == (3, 8, 3) and batch.reward.shape == (3, 8)
    for ours, theirs in zip(batch, expected, strict=True):
        assert torch.equal(ours, theirs)
    assert batch.terminated.dtype == torch.float32  # no bool tensors reach the loss
    assert torch.equal(batch.at(1).observation, stored["observation"][idx[1]])


def test_target_update_is_bit_identical_to_torchrl_soft_update():
    ours, theirs = sac_loss(3, PENDULUM), sac_loss(3, PENDULUM)
    soft, fast = SoftUpdate(theirs, tau=0.005), TargetUpdate(ours, tau=0.005)
    with torch.no_grad():  # SoftUpdate copied the critics into the targets: so do we
        for a, b in zip(ours.target_qvalue_network_params.values(True, True),
                        theirs.target_qvalue_network_params.values(True, True), strict=True):
            a.copy_(b)
        for loss in (ours, theirs):  # critics that have moved away from their targets
            for p in loss.qvalue_network_params.values(True, True):
                p.mul_(1.5)
    before = [t.clone() for t in ours.target_qvalue_network_params.values(True, True)]
    for _ in range(3):
        soft.step()
        fast.step()
    after = list(ours.target_qvalue_network_params.values(True, True))
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    for a, b in zip(after, theirs.target_qvalue_network_params.values(True, True), strict=True):
        assert torch.equal(a, b)


def test_fused_adam_steps_as_the_default_adam_up_to_rounding():
    """make_optimizer's choice for the fast path changes speed, and the last bits only."""
    a, b = sac_loss(3, PENDULUM), sac_loss(3, PENDULUM)
    batch = Minibatch.from_tensordict(transitions(3, PENDULUM, 64))
    for loss, impl in ((a, "fast"), (b, "torchrl")):
        opt = make_optimizer(loss, 3e-4, impl)
        for _ in range(3):
            torch.manual_seed(5)
            out = FastSACLoss(loss)(batch)
            opt.zero_grad()
            (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
            opt.step()
    assert make_optimizer(a, 3e-4, "fast").defaults["fused"]
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


def test_fast_loss_follows_the_loss_module_to_another_dtype():
    """The fast loss lists the TorchRL loss's tensors once; .to() (as Lightning moves the
    module to its device) keeps those objects, so it still computes on the moved ones."""
    loss = sac_loss(3, PENDULUM)
    fast = FastSACLoss(loss)
    loss.to(torch.float64)
    batch = transitions(3, PENDULUM, 64).apply(
        lambda t: t.double() if t.is_floating_point() else t)
    params = list(loss.parameters())
    theirs, _ = losses_and_grads(lambda td: loss(td.clone()), batch, params)
    ours, grads = losses_and_grads(fast, Minibatch.from_tensordict(batch), params)
    assert all(g.dtype == torch.float64 for g in grads if g is not None)
    for key in OUTPUTS:  # not 1e-15: TorchRL takes log|action scale| in the spec's float32
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-7, atol=1e-9)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def failing(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")
        return failing

    monkeypatch.setattr(torch, "compile", broken_compile)
    loss = sac_loss(4, CARTPOLE)
    TargetUpdate(loss, 0.005)  # as in FastUpdate: TorchRL then knows targets are updated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = FastSACLoss(loss, compile=True)
        batch = Minibatch.from_tensordict(transitions(4, CARTPOLE, 32))
        first = fast(batch)
    assert [str(w.message).split(" (")[0] for w in caught] == [
        "agent.compile: torch.compile is unavailable"]
    assert "InvalidCxxCompiler: No working C++ compiler found)" in str(caught[0].message)
    assert not fast.losses.is_compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = fast(batch)
    eager = FastSACLoss(loss, compile=False)(batch)
    for key in OUTPUTS:
        assert torch.equal(first[key], eager[key]) and torch.equal(again[key], eager[key])


def test_no_cxx_compiler_means_eager_without_trying(monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compile attempted"))
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        fast = FastSACLoss(sac_loss(3, PENDULUM), compile=True)
    assert not fast.losses.is_compiled


def test_compiled_loss_equals_eager_loss():
    """agent.compile: the same losses and gradients as eager, up to float rounding (the
    compiled code draws the actor's noise as eager torch does: fallback_random)."""
    loss = sac_loss(3, PENDULUM, hidden=(32,))  # one hidden layer: a smaller graph to compile
    TargetUpdate(loss, 0.005)
    batch = Minibatch.from_tensordict(transitions(3, PENDULUM, 128))
    params = list(loss.parameters())
    fast = FastSACLoss(loss, compile=True)
    ours, our_grads = losses_and_grads(fast, batch, params)
    assert fast.losses.is_compiled  # compiled, not the eager fallback
    theirs, their_grads = losses_and_grads(FastSACLoss(loss), batch, params)
    for key in OUTPUTS:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
