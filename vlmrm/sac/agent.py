"""SAC networks and losses from TorchRL: continuous (Box) and discrete (one-hot) actions."""

from __future__ import annotations

from tensordict.nn import (
    NormalParamExtractor,
    TensorDictModule,
)
from torch import nn
from torchrl.data import OneHot, TensorSpec
from torchrl.modules import (
    MLP,
    OneHotCategorical,
    ProbabilisticActor,
    TanhNormal,
    ValueOperator,
)
from torchrl.objectives import DiscreteSACLoss, LossModule, SACLoss, ValueEstimators

from vlmrm.config.schema import AgentConfig
from vlmrm.errors import ConfigError

#: ``agent.activation`` names -> hidden-layer activations.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


def is_discrete(action_spec: TensorSpec) -> bool:
    return isinstance(action_spec, OneHot)


def make_agent(obs_dim: int, action_spec: TensorSpec, hidden: list[int],
               activation: str = "relu") -> tuple[ProbabilisticActor, TensorDictModule]:
    """Actor and Q-network for ``observation`` vectors of size ``obs_dim``."""

    def mlp(inputs: int, outputs: int) -> MLP:
        return MLP(in_features=inputs, out_features=outputs, num_cells=hidden,
                   activation_class=ACTIVATIONS[activation])

    if is_discrete(action_spec):
        n = action_spec.shape[-1]
        logits = TensorDictModule(mlp(obs_dim, n), in_keys=["observation"], out_keys=["logits"])
        actor = ProbabilisticActor(logits, in_keys=["logits"], spec=action_spec,
                                   distribution_class=OneHotCategorical)
        q = TensorDictModule(mlp(obs_dim, n), in_keys=["observation"], out_keys=["action_value"])
        return actor, q
    if action_spec.shape.numel() == 0 or not hasattr(action_spec, "space"):
        raise ConfigError(f"Unsupported action space {action_spec}: vlmrm's SAC handles "
                          "Box and Discrete actions.")
    act_dim = action_spec.shape[-1]
    net = nn.Sequential(mlp(obs_dim, 2 * act_dim), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"], spec=action_spec, distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
    )
    q = ValueOperator(mlp(obs_dim + act_dim, 1), in_keys=["observation", "action"])
    return actor, q


def check_action_noise(cfg: AgentConfig, action_spec: TensorSpec) -> None:
    if cfg.action_noise is not None and is_discrete(action_spec):
        raise ConfigError(f"agent.action_noise={cfg.action_noise!r} needs continuous actions; "
                          "this env's are discrete. Remove agent.action_noise.")


def make_loss(actor: ProbabilisticActor, qvalue: TensorDictModule, action_spec: TensorSpec,
              cfg: AgentConfig) -> LossModule:
    """SAC (or discrete SAC) loss with twin critics and TD(0) targets."""
    fixed = cfg.ent_coef != "auto"
    alpha = float(cfg.ent_coef) if fixed else 1.0
    if is_discrete(action_spec):
        loss = DiscreteSACLoss(
            actor, qvalue, action_space=action_spec, num_actions=action_spec.shape[-1],
            num_qvalue_nets=2, loss_function=cfg.critic_loss, alpha_init=alpha,
            fixed_alpha=fixed, target_entropy_weight=cfg.target_entropy_weight,
        )
    else:
        loss = SACLoss(actor, qvalue, num_qvalue_nets=2, loss_function=cfg.critic_loss,
                       alpha_init=alpha, fixed_alpha=fixed, action_spec=action_spec)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=cfg.gamma)
    return loss
