"""Random and hostile configs: each loads, or fails with one clear ConfigError (exit code 2,
one paragraph) — never another exception, a traceback, or code run from a value."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vlmrm.commands.fit
from tests.helpers import CONFIGS
from vlmrm.cli import main
from vlmrm.config import Config, load_config
from vlmrm.config.load import schema_keys
from vlmrm.errors import ConfigError

KEYS = schema_keys()
GROUPS = [k for k in KEYS if "." not in k]
TRICKY_TEXT = ["${oc.env:HOME}", "${oc.env:VLMRM_SURELY_UNSET}", "${oc.env:HOME,x}",
               "${agent.batch_size}", "${nope.key}", "${oc.decode:'1'}", "${eval:1+1}",
               "${oc.create:{a: 1}}", "???", "\\${escaped}", "a\x00b", "../../etc", "auto",
               "cuda:99", "ground_truth", "vlmrm/CartPole-v0", "os:Foo-v0", "[1, 2", "{a: 1}",
               "nan", "inf", "-1", "1e400", "", " ", "Humanoid-v5"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.sampled_from(TRICKY_TEXT), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
near_keys = st.one_of(st.sampled_from(KEYS), st.builds(
    lambda key, cut: key[:cut] + key[cut + 1:], st.sampled_from(KEYS), st.integers(0, 30)),
    st.text(max_size=15))


def _group_doc(group: str, fields: dict) -> dict:
    prefix = f"{group}."
    return {k.removeprefix(prefix): v for k, v in fields.items()}


yaml_docs = st.one_of(
    st.dictionaries(st.sampled_from(GROUPS) | st.text(max_size=8),
                    st.dictionaries(near_keys, values, max_size=5) | values, max_size=5),
    st.dictionaries(near_keys, values, max_size=4),
)
overrides = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", near_keys,
              st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=20),
                        st.integers(-10, 10**6).map(str))),
    st.text(max_size=20)), max_size=4)


def _check_outcome(load) -> Config | None:
    try:
        return load()
    except ConfigError as err:
        message = str(err)
        assert message.strip() and "\n" not in message, repr(message)
        assert "Traceback" not in message
        return None


def _write(doc, raw: bool) -> Path:
    fd, name = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(doc if raw else yaml.safe_dump(doc, allow_unicode=True))
    return Path(name)


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FUZZ
@given(doc=yaml_docs | st.text(max_size=60), extra=overrides)
def test_random_yaml_and_overrides_load_or_fail_with_one_clear_error(doc, extra):
    path = _write(doc, raw=isinstance(doc, str))
    try:
        _check_outcome(lambda: load_config(path, extra))
    finally:
        path.unlink()


@FUZZ
@given(extra=overrides)
def test_random_overrides_on_a_shipped_config(extra):
    _check_outcome(lambda: load_config(CONFIGS / "cartpole.yaml", extra))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=yaml_docs, extra=overrides)
def test_the_cli_answers_random_input_with_exit_code_2_and_one_line(doc, extra):
    path = _write(doc, raw=False)
    stderr = io.StringIO()
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()), pytest.MonkeyPatch.context() as mp:
        mp.setattr(vlmrm.commands.fit, "fit", _no_training)
        try:
            code = main(["fit", "--config", str(path), f"logging.output_dir={out}/runs", *extra])
        except SystemExit as exit_:  # argparse: an override that looks like an option
            code = exit_.code
        finally:
            path.unlink()
        assert not Path(out, "runs").exists()
    text = stderr.getvalue()
    assert code in (0, 2) and "Traceback" not in text
    if code == 2 and text.startswith("vlmrm: error: "):
        assert len(text.strip().splitlines()) == 1


def _no_training(cfg, config_path=None, callbacks=()):
    """Stands in for training: a config that loads is all this test needs."""
    assert isinstance(cfg, Config)
    return vlmrm.commands.fit.RunResult(Path("unused"), 0, primary=False)


@pytest.mark.parametrize("value, expected", [
    ("${vlmrm_test_eval:'__import__(\"os\").system(\"touch pwned\")'}",
     "uses the resolver 'vlmrm_test_eval'"),
    ("${oc.decode:'[1, 2]'}", "uses the resolver 'oc.decode'"),
    ("run-${oc.select:seed}", "uses the resolver 'oc.select'"),
])
def test_resolvers_other_than_oc_env_are_refused_before_resolution(value, expected, tmp_path):
    """Even a resolver some library registered (here an eval-like one) is never called."""
    from omegaconf import OmegaConf

    calls = []
    with warnings.catch_warnings():  # the registration's name differs across OmegaConf 2.3/2.4
        warnings.simplefilter("ignore")
        OmegaConf.register_new_resolver("vlmrm_test_eval", lambda code: calls.append(code),
                                        replace=True)
    doc = tmp_path / "cfg.yaml"
    doc.write_text(f"logging:\n  run_name: {yaml.safe_dump(value).splitlines()[0]}\n")
    for load in (lambda: load_config(CONFIGS / "cartpole.yaml", [f"logging.run_name={value}"]),
                 lambda: load_config(doc)):
        with pytest.raises(ConfigError, match=expected):
            load()
    assert calls == []


def test_oc_env_interpolation_is_allowed_and_resolved(monkeypatch):
    monkeypatch.setenv("VLMRM_TEST_SCRATCH", "/scratch/me")
    cfg = load_config(CONFIGS / "cartpole.yaml",
                      ["logging.output_dir=${oc.env:VLMRM_TEST_SCRATCH}/runs"])
    assert cfg.logging.output_dir == "/scratch/me/runs"
    with pytest.raises(ConfigError, match="VLMRM_SURELY_UNSET"):
        load_config(CONFIGS / "cartpole.yaml", ["logging.output_dir=${oc.env:VLMRM_SURELY_UNSET}"])


def test_yaml_tags_that_build_objects_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    assert not Path("pwned").exists()
