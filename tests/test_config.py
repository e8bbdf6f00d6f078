"""Bad configs: one clear message naming the key and value, exit code 2, nothing written."""


from dataclasses import MISSING, fields, is_dataclass

import pytest

from tests.helpers import CONFIGS
from vlmrm.cli import main
from vlmrm.config import Config, describe_schema, load_config


@pytest.mark.parametrize("overrides, expected", [
    (["agent.total_env_step=10"], "agent.total_env_step"),              # unknown key
    (["reward.colour=red"], "reward.colour"),                           # unknown key in group
    (["agent.total_env_steps=many"], "agent.total_env_steps"),          # wrong type
    (["reward.alpha=1.5"], "reward.alpha=1.5"),                          # alpha out of range
    (["reward.alpha=-0.1"], "reward.alpha=-0.1"),
    (["reward.goal_prompts=[]"], "reward.goal_prompts"),                 # empty prompts
    (["reward.baseline_prompts=[]"], "reward.baseline_prompts"),
    (["reward.backend=clipp"], "reward.backend='clipp'"),               # unknown backend
    (["env.id=CartPol-v9"], "env.id='CartPol-v9'"),                     # unknown env
    (["reward.precision=fp8"], "reward.precision='fp8'"),
    (["agent.ent_coef=lots"], "agent.ent_coef='lots'"),
    (["env.terminate_early=false"], "env.episode_length"),               # would never end
    (["agent.gamma=0"], "agent.gamma=0"),
    (["agent.total_env_steps"], "key=value"),                            # malformed override
    (["agent.total_env_step=10"], "Did you mean 'agent.total_env_steps'?"),  # near miss
    (["agent.checkpoint_every=10"], "Did you mean 'logging.checkpoint_every'?"),
    (["seed=-1"], "seed=-1"),
    (["agent.learning_rate=inf"], "agent.learning_rate=inf"),
    (["agent.ent_coef=1e400"], "agent.ent_coef='inf'"),
    (["agent.buffer_size=10"], "agent.buffer_size=10"),                  # < batch_size
    (["agent.hidden_sizes=[64,0]"], "agent.hidden_sizes=[64, 0]"),
    (["agent.num_threads=0"], "agent.num_threads=0"),
    (["agent.target_entropy_weight=2"], "agent.target_entropy_weight=2.0"),
    (["agent.loss_impl=jax"], "agent.loss_impl='jax'"),
    (["agent.compile=true", "agent.loss_impl=torchrl"], "agent.compile=true needs agent.loss_impl=fast"),
    (["reward.compile=maybe"], "reward.compile"),
    (["env.render_size=0"], "env.render_size=0"),
    (["env.kwargs.render_mode=human"], "env.kwargs.render_mode"),
    (["env.id=os:Foo-v0"], "importing 'os' did not register 'Foo-v0'"),  # module:Env form
    (["reward.device=gpu"], "reward.device='gpu'"),
    (["reward.model_config=/no/such.json"], "reward.model_config='/no/such.json'"),
    (["reward.model='  '"], "reward.model='  '"),
    (["trainer.precision=33"], "trainer.precision='33'"),
    (["trainer.devices=0"], "trainer.devices=0"),
    (["trainer.num_nodes=0"], "trainer.num_nodes=0"),
    (["logging.run_name=../elsewhere"], "logging.run_name='../elsewhere'"),
    (["logging.keep_checkpoints=0"], "logging.keep_checkpoints=0"),
    (["seed=${oc.env:VLMRM_SURELY_UNSET}"], "VLMRM_SURELY_UNSET"),
    (["seed=${nope}"], "seed"),
    (["seed=["], "Override 'seed=['"),
])
def test_bad_input_exits_2_with_named_key_and_writes_nothing(overrides, expected, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"),
                 f"logging.output_dir={out}", *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert err.startswith("vlmrm: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1  # one paragraph
    assert not out.exists()


def test_unknown_key_in_yaml_file_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  id: CartPole-v1\n  episode_lenght: 10\n")
    assert main(["fit", "--config", str(bad), f"logging.output_dir={tmp_path}/r"]) == 2
    assert "env.episode_lenght" in capsys.readouterr().err


def test_missing_config_file_is_an_error(tmp_path, capsys):
    assert main(["fit", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_uncached_model_exits_2_without_a_run_dir(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"), f"logging.output_dir={out}"])
    assert code == 2
    assert "ViT-B-32/laion2b_s34b_b79k" in capsys.readouterr().err
    assert not out.exists()


def test_yaml_overrides_defaults_and_dotlist_overrides_yaml():
    cfg = load_config(CONFIGS / "cartpole.yaml", ["agent.total_env_steps=123", "reward.alpha=0.25"])
    assert isinstance(cfg, Config)
    assert cfg.agent.total_env_steps == 123 and cfg.reward.alpha == 0.25
    assert cfg.reward.goal_prompts == ["pole vertically upright on top of the cart"]
    assert cfg.agent.buffer_size == Config().agent.buffer_size  # untouched default from code


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    load_config(path)


def _all_fields(cls=Config, prefix=""):
    for f in fields(cls):
        default = f.default_factory() if f.default_factory is not MISSING else None
        yield f"{prefix}{f.name}", f
        if is_dataclass(default):
            yield from _all_fields(type(default), f"{prefix}{f.name}.")


def test_every_config_field_documents_itself_and_help_prints_it():
    text = describe_schema()
    for key, f in _all_fields():
        assert f.metadata.get("help", "").strip(), f"{key} has no help text"
        if "." in key:
            assert f"  {key} = " in text and f.metadata["help"] in text, key


def test_a_prompt_longer_than_the_text_context_is_refused(tmp_path, capsys):
    """The demo model reads 32 tokens: a longer prompt is refused, not truncated."""
    out = tmp_path / "runs"
    prompt = "pole vertically upright on top of the cart " * 5
    code = main(["fit", "--config", str(CONFIGS / "quickstart.yaml"),
                 f"logging.output_dir={out}", f"reward.goal_prompts=['{prompt}']"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("vlmrm: error: reward.goal_prompts: the prompt") and "at most 32" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_missing_config_file_and_non_mapping_yaml(tmp_path, capsys):
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("env: [unclosed\n")
    for path, expected in ((listing, "must hold a mapping"), (broken, "is not valid YAML")):
        assert main(["fit", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
