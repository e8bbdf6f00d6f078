"""The contract every judge backend honours (kind ``judge``), run for each family of
``hf_judge`` on tiny models built and saved locally (tests/backends/fixtures.py).

:class:`JudgeContract` holds the tests; a subclass names a family. A new judge backend gets
the suite by subclassing it with a builder of its own.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.backends.fixtures import PROMPTS, build_judge, make_frames
from vlmrm.backends.base import JUDGE
from vlmrm.cli import main
from vlmrm.errors import ConfigError
from vlmrm.run.build import make_backend

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
QUESTION = f"Does this image show {PROMPTS[0]}? Answer yes or no."
ANSWERS = ("Yes", "No")


class JudgeContract:
    """Abstract: subclasses set ``family`` (a :data:`tests.backends.fixtures.JUDGE_FAMILIES`
    name)."""

    family = ""

    @pytest.fixture(scope="class")
    def case(self, tmp_path_factory):
        with torch.no_grad():
            return build_judge(tmp_path_factory.mktemp(self.family), self.family)

    @pytest.fixture(scope="class", params=DEVICES)
    def backend(self, case, request):
        return make_backend(case.cfg, request.param)  # registry, config, saved files

    @pytest.fixture(scope="class")
    def frames(self):
        return make_frames(4, 40, 56)

    @pytest.fixture(scope="class")
    def scores(self, backend, frames):
        return backend.log_probs(frames, QUESTION, ANSWERS)

    def test_kind_shape_dtype_device(self, backend, frames, scores):
        assert backend.kind == JUDGE and backend.name == "hf_judge"
        assert scores.shape == (len(frames), 2) and scores.dtype == torch.float32
        assert scores.device.type == backend.device.type
        assert bool((scores < 0).all()) and bool(scores.isfinite().all())  # log-probabilities

    def test_model_weights_live_on_the_backend_device(self, backend):
        assert {p.device.type for p in backend.model.parameters()} == {backend.device.type}

    def test_empty_batch(self, backend):
        empty = torch.zeros(0, 20, 30, 3, dtype=torch.uint8)
        assert backend.log_probs(empty, QUESTION, ANSWERS).shape == (0, 2)

    def test_deterministic(self, backend, frames, scores):
        assert torch.equal(backend.log_probs(frames, QUESTION, ANSWERS), scores)

    def test_same_scores_whatever_the_batch_size(self, backend, frames, scores):
        before = backend.batch_size
        try:
            backend.batch_size = 1
            one = backend.log_probs(frames, QUESTION, ANSWERS)
            backend.batch_size = 3  # uneven passes: 3 + 1
            three = backend.log_probs(frames, QUESTION, ANSWERS)
        finally:
            backend.batch_size = before
        torch.testing.assert_close(one, scores, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(three, scores, atol=1e-5, rtol=1e-4)

    def test_frame_order_does_not_leak_between_frames(self, backend, frames, scores):
        backward = backend.log_probs(frames.flip(0), QUESTION, ANSWERS)
        torch.testing.assert_close(backward.flip(0), scores, atol=1e-5, rtol=1e-4)
        assert not torch.equal(scores[0], scores[-1])  # the frames are told apart

    def test_loaded_model_equals_the_saved_one(self, backend, case, frames, scores):
        # The in-memory original, fed by the processor loaded back from the directory.
        inputs = backend.inputs(frames, QUESTION)
        with torch.inference_mode():
            logits = case.model.to(backend.device)(**inputs).logits[:, -1].float()
        ids = [case.processor.tokenizer.convert_tokens_to_ids(a) for a in ANSWERS]
        torch.testing.assert_close(torch.log_softmax(logits, -1)[:, ids], scores,
                                   atol=1e-5, rtol=1e-4)

    def test_frames_are_resized_where_rendered(self, backend, frames):
        small = backend.preprocessor.resize_frames(frames)
        assert small.shape == (len(frames), *backend.image_size, 3)
        assert small.dtype == torch.uint8
        assert backend.log_probs(small, QUESTION, ANSWERS).shape == (len(frames), 2)

    def test_a_question_longer_than_the_context_is_refused(self, backend):
        limit = backend.context_length
        base = backend.prompt_tokens(QUESTION.replace(PROMPTS[0], "cart"))
        fits = QUESTION.replace(PROMPTS[0], " ".join(["cart"] * (limit - base + 1)))
        assert backend.prompt_tokens(fits) == limit  # one word-level token per "cart"
        backend.check_question(fits)
        with pytest.raises(ConfigError, match=r"reward\.question: .* tokens long.* at most"):
            backend.check_question(fits.replace("cart", "cart cart", 1))

    def test_answers_are_looked_up_from_the_tokenizer(self, backend, case):
        tok = case.processor.tokenizer
        assert backend.answer_ids(QUESTION, ANSWERS) == tok.convert_tokens_to_ids(list(ANSWERS))
        with pytest.raises(ConfigError, match="not one"):
            backend.answer_ids(QUESTION, ["Yes No", "No"])
        with pytest.raises(ConfigError, match="same token"):
            backend.answer_ids(QUESTION, ["Yes", "Yes"])

    def test_bf16_weights_give_float32_scores_close_to_fp32(self, backend, case, frames,
                                                            scores):
        low = make_backend(dataclasses.replace(case.cfg, precision="bf16"), str(backend.device))
        assert next(low.model.parameters()).dtype == torch.bfloat16
        ours = low.log_probs(frames, QUESTION, ANSWERS)
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, scores, atol=0.02, rtol=0.01)

    def test_backends_check_describes_the_judge(self, case, capsys):
        assert main(["backends", "--check", "hf_judge", case.cfg.model]) == 0
        out = capsys.readouterr().out
        assert "(kind judge): context 256 tokens" in out


class TestIdefics3Judge(JudgeContract):
    family = "idefics3"


class TestQwen25VLJudge(JudgeContract):
    family = "qwen2_5_vl"


class TestQwen3VLJudge(JudgeContract):
    family = "qwen3_vl"


class TestPaliGemmaJudge(JudgeContract):
    family = "paligemma"
