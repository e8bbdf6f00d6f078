"""The judge kind: yes_no and progress equal one direct ``model(**processor(...))`` forward,
goal prompts average, scalar transforms and running statistics work as for embedding
chains, and the config resolves and checks judge chains and questions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.backends.fixtures import JUDGE_FAMILIES, build_judge, make_frames, to_pil
from vlmrm.config import load_config
from vlmrm.errors import ConfigError
from vlmrm.reward.judge import JudgeRewardModel, Progress, YesNo
from vlmrm.run.build import make_backend

torch.set_num_threads(1)
GOALS = ["pole vertically upright on top of the cart", "a humanoid robot"]
DIGITS = list("0123456789")


@pytest.fixture(scope="module", params=JUDGE_FAMILIES)
def judge(request, tmp_path_factory):
    with torch.no_grad():
        case = build_judge(tmp_path_factory.mktemp(request.param), request.param)
    return case, make_backend(case.cfg, "cpu")


@pytest.fixture(scope="module")
def frames():
    return make_frames(3, 40, 56)


def direct_next_token_logits(case, frames, question):
    """What a user writes: the processor loaded from the directory on PIL images, the
    prompt in the model's own format, one forward of the saved model."""
    proc = case.processor
    if proc.chat_template is None:  # PaliGemma: the image token, then the question
        text = proc.image_token + question
    else:
        text = proc.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
            add_generation_prompt=True)
    # hf_judge turns Idefics3's image splitting off (the fixture saves it off as well).
    split = {"do_image_splitting": False} if case.family == "idefics3" else {}
    inputs = proc(text=[text] * len(frames), images=[[im] for im in to_pil(frames)],
                  return_tensors="pt", **split)
    inputs.pop("labels", None)
    with torch.inference_mode():
        return case.model.cpu()(**inputs).logits[:, -1].float()


def test_yes_no_equals_a_direct_forward(judge, frames):
    case, backend = judge
    model = JudgeRewardModel(backend, GOALS[:1], transform=["yes_no"])
    logits = direct_next_token_logits(case, frames, YesNo.question.format(goal=GOALS[0]))
    yes, no = case.processor.tokenizer.convert_tokens_to_ids(["Yes", "No"])
    log_p = torch.log_softmax(logits, -1)
    torch.testing.assert_close(model(frames), log_p[:, yes] - log_p[:, no], atol=1e-5, rtol=1e-4)


def test_progress_equals_a_direct_forward_and_goal_prompts_average(judge, frames):
    case, backend = judge
    model = JudgeRewardModel(backend, GOALS, transform=["progress"])
    ids = case.processor.tokenizer.convert_tokens_to_ids(DIGITS)
    expected = []
    for goal in GOALS:
        p = torch.softmax(direct_next_token_logits(
            case, frames, Progress.question.format(goal=goal))[:, ids], -1)
        expected.append((p * torch.arange(10.0)).sum(-1) / 9)
    got = model(frames)
    torch.testing.assert_close(got, torch.stack(expected).mean(0), atol=1e-5, rtol=1e-4)
    assert bool(((got >= 0) & (got <= 1)).all())


def test_own_question_scalar_transforms_and_frozen_running_statistics(judge, frames):
    _, backend = judge
    question = "Is {goal} on top? Answer yes or no."
    plain = JudgeRewardModel(backend, GOALS[:1], question=question)  # null -> yes_no
    assert plain.questions == [question.format(goal=GOALS[0])]
    raw = plain(frames.reshape(3, 1, *frames.shape[1:]))  # any leading shape
    assert raw.shape == (3, 1)
    raw = raw.flatten()
    cut = float(raw.median())
    binary = JudgeRewardModel(backend, GOALS[:1], question=question,
                              transform=["yes_no", {"name": "threshold", "value": cut}])
    assert torch.equal(binary(frames), (raw >= cut).float())
    norm = JudgeRewardModel(backend, GOALS[:1], question=question,
                            transform=["yes_no", "running_norm"])
    assert torch.equal(norm(frames), raw)  # no statistics yet, not updating: the identity
    norm.update_stats = True
    with norm.frozen():
        norm(frames)
    assert norm.state_dict()["1.count"] == 0
    normalised = norm(frames)
    assert norm.state_dict()["1.count"] == 3
    torch.testing.assert_close(normalised, (raw - raw.mean()) / raw.std(unbiased=False),
                               atol=1e-4, rtol=1e-3)
    again = JudgeRewardModel(backend, GOALS[:1], question=question,
                             transform=["yes_no", "running_norm"])
    again.load_state_dict(norm.state_dict())  # a resumed run: the same statistics
    with norm.frozen():
        expected = norm(frames)
    assert torch.equal(again(frames), expected)
    assert not torch.equal(expected, raw)


def test_a_mix_item_is_left_to_the_scorer(judge, frames):
    _, backend = judge
    mixed = JudgeRewardModel(backend, GOALS[:1], transform=[
        "yes_no", {"name": "mix", "terms": {"gt_reward": 0.1}}])
    assert len(mixed.formula) == 1
    assert torch.equal(mixed(frames), JudgeRewardModel(backend, GOALS[:1])(frames))


def test_the_frames_a_judge_sees_are_resized_where_rendered(judge, frames):
    _, backend = judge
    model = JudgeRewardModel(backend, GOALS[:1])
    assert model.image_size == backend.image_size
    small = model.resize_frames(frames)
    assert small.shape == (3, *backend.image_size, 3) and torch.equal(model.model_view(frames), small)


def test_make_backend_takes_reward_resize_and_compile(judge):
    case, backend = judge
    with pytest.warns(UserWarning, match="runs eager"):
        other = make_backend(dataclasses.replace(case.cfg, resize="squash", compile=True), "cpu")
    assert other.preprocessor.resize_mode == "squash" and other.image_size == backend.image_size


def test_random_weights_from_the_saved_config(judge, frames):
    case, backend = judge
    with pytest.warns(UserWarning, match="RANDOM weights"):
        other = make_backend(dataclasses.replace(case.cfg, pretrained=False), "cpu")
    assert type(other.model) is type(backend.model)
    question = f"Is {GOALS[0]} done?"
    fresh = other.log_probs(frames, question, ["Yes", "No"])
    assert fresh.shape == (3, 2)
    assert not torch.equal(fresh, backend.log_probs(frames, question, ["Yes", "No"]))  # not loaded


# -- config: torch-free checks -------------------------------------------------------------
JUDGE = ("reward.backend=hf_judge", "reward.model=some/judge")


def load(*overrides):
    return load_config("configs/cartpole.yaml", list(overrides))


def test_a_judge_config_resolves_null_to_yes_no_and_needs_no_baseline_prompts():
    assert load(*JUDGE).reward.transform == [{"name": "yes_no"}]
    cfg = load(*JUDGE, "reward.baseline_prompts=[]", "reward.transform=[progress,running_norm]",
               "reward.question='Is {goal} done, {{0-9}}?'")
    assert [item["name"] for item in cfg.reward.transform] == ["progress", "running_norm"]
    assert load().reward.transform == [{"name": "goal_baseline", "alpha": 0.0}]  # embedding
    with pytest.raises(ConfigError, match="baseline_prompts"):
        load("reward.baseline_prompts=[]")


@pytest.mark.parametrize("overrides, match", [
    ((*JUDGE, "reward.transform=[goal_baseline]"), "'judge', which needs a judge formula"),
    ((*JUDGE, "reward.alpha=0.5"), "a judge backend does not embed"),
    (("reward.transform=[yes_no]",), "'embedding', which needs an embedding formula"),
    ((*JUDGE, "reward.transform=[running_norm]"), "judge formula"),
    ((*JUDGE, "reward.question='Does this image show it?'"), "must contain {goal}"),
    ((*JUDGE, "reward.question='Is {goal} near {object}?'"), r"found \{object\}"),
    ((*JUDGE, "reward.question='Is {goal!r} done?'"), "must contain {goal}"),
    ((*JUDGE, "reward.question='Is {goal done?'"), "not a valid template"),
    (("reward.question='Is {goal} done?'",), "judge backends only"),
    ((*JUDGE, "reward.window=4"), "one frame per reward"),
])
def test_bad_judge_configs_are_refused_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load(*overrides)


def test_idefics3_frames_are_one_image_not_tiles(tmp_path):
    from transformers import Idefics3ImageProcessor

    case = build_judge(tmp_path, "idefics3")
    # Saved as SmolVLM ships it: upsample to 4 tiles' size and split.
    case.processor.image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    case.processor.save_pretrained(tmp_path)
    backend = make_backend(case.cfg, "cpu")
    frames = make_frames(2, 32, 32)
    question = YesNo.question.format(goal=GOALS[0])
    tiled = case.processor(text=[backend.render(question)] * 2, images=[[f] for f in frames],
                           return_tensors="pt")
    ours = backend.inputs(frames, question)
    assert tiled["pixel_values"].shape[1] == 5 and ours["pixel_values"].shape[1] == 1
    assert ours["input_ids"].shape[-1] < tiled["input_ids"].shape[-1]
    assert backend.image_size == (32, 32)
