"""The contract every reward backend must honour, run for each built-in and the test plugin.

:class:`BackendContract` holds the tests; each subclass names a backend, builds a tiny
model of its family (``backend_fixtures``), and states how far its batched tensor
preprocessing may be from the library's own per-image processor, with the reason.
A new backend gets the whole suite by subclassing it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.backends.fixtures import (
    PROMPTS,
    build_hf_clip,
    build_open_clip,
    build_siglip,
    build_toy,
    build_xclip,
    make_frames,
    pixel_levels,
    to_pil,
)
from vlmrm.errors import ConfigError
from vlmrm.run.build import make_backend

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.detach().float().cpu(), dim=-1)


class BackendContract:
    """Abstract: subclasses set ``build`` and the preprocessing bounds."""

    build = staticmethod(lambda root: None)
    # Bound on |batched tensor preprocessing - library's own per-image PIL processor|, in
    # 0-255 pixel levels. Both paths resize uint8 images with antialiased bicubic filters
    # and round back to uint8, but PIL and torchvision compute the filter in different
    # fixed/floating-point arithmetic, so a resized pixel can round to the neighbouring
    # level: exactly 1 level apart, never more (measured: 1.00 for every backend, on
    # ~0.1 % of values). Crop offsets, mean/std or interpolation mistakes give >= 5 levels.
    max_pixel_levels: float = 1.0
    # Bound on the mean difference in pixel levels (measured 0.0008-0.0012).
    mean_pixel_levels: float = 0.05
    # Bound against a second reference that works on tensors like we do (transformers'
    # torchvision image processors): the same uint8 resize and crop, so only float
    # rounding of the normalisation may differ (measured: 0.00).
    other_max_pixel_levels: float = 0.01

    @pytest.fixture(scope="class")
    def case(self, tmp_path_factory):
        root = tmp_path_factory.mktemp(type(self).__name__)
        with torch.no_grad():
            return type(self).build(root)

    @pytest.fixture(scope="class", params=DEVICES)
    def backend(self, case, request):
        # The real loading path: the registry, the config, the saved files.
        return make_backend(case.cfg, request.param)

    @pytest.fixture(scope="class")
    def frames(self):
        return make_frames()

    # -- shapes, dtype, norm, device ---------------------------------------------------
    def test_image_embeddings_shape_dtype_norm_device(self, backend, frames):
        emb = backend.encode_images(frames)
        assert emb.shape == (len(frames), backend.embed_dim)
        assert emb.dtype == torch.float32
        assert emb.device.type == backend.device.type
        torch.testing.assert_close(emb.norm(dim=-1).cpu(), torch.ones(len(frames)))

    def test_text_embeddings_shape_dtype_norm_device(self, backend):
        emb = backend.encode_text(PROMPTS)
        assert emb.shape == (len(PROMPTS), backend.embed_dim)
        assert emb.dtype == torch.float32
        assert emb.device.type == backend.device.type
        torch.testing.assert_close(emb.norm(dim=-1).cpu(), torch.ones(len(PROMPTS)))

    def test_model_weights_live_on_the_backend_device(self, backend):
        devices = {p.device.type for p in backend.model.parameters()}
        assert devices == {backend.device.type}

    def test_empty_batch(self, backend):
        empty = torch.zeros(0, 20, 30, 3, dtype=torch.uint8)
        assert backend.encode_images(empty).shape == (0, backend.embed_dim)

    # -- determinism and batching ------------------------------------------------------
    def test_deterministic(self, backend, frames):
        assert torch.equal(backend.encode_images(frames), backend.encode_images(frames))

    def test_same_embeddings_whatever_the_batch_size(self, backend, frames):
        before = backend.batch_size
        try:
            backend.batch_size = 1
            one = backend.encode_images(frames)
            backend.batch_size = 3  # uneven chunks: 3 + 2
            three = backend.encode_images(frames)
        finally:
            backend.batch_size = before
        torch.testing.assert_close(one, three, atol=1e-5, rtol=1e-4)

    def test_frames_resized_where_rendered_reach_the_encoder_unchanged(self, backend, frames):
        # The step loop resizes frames before they cross to the scorer: the model must read
        # exactly the pixels it reads from full-size frames, in every resize mode.
        p = backend.preprocessor
        small = p.resize_frames(frames)
        assert small.shape == (len(frames), *p.size, 3) and small.dtype == torch.uint8
        assert p.resize_frames(small) is small  # already at size: left as it is
        assert torch.equal(p(small), p(frames))
        assert torch.equal(backend.encode_images(small), backend.encode_images(frames))
        envs_by_steps = frames[:4].reshape(2, 2, *frames.shape[1:])  # [envs, steps, H, W, 3]
        assert torch.equal(p.resize_frames(envs_by_steps), small[:4].reshape(2, 2, *p.size, 3))

    def test_image_order_does_not_leak_between_frames(self, backend, frames):
        forward = backend.encode_images(frames)
        backward = backend.encode_images(frames.flip(0))
        torch.testing.assert_close(forward, backward.flip(0), atol=1e-5, rtol=1e-4)

    # -- text cache --------------------------------------------------------------------
    def test_text_cache_hits_on_second_call(self, backend):
        prompts = ["a prompt only this test uses", "and another one"]
        hits = backend.text_cache_hits
        first = backend.encode_text(prompts)
        assert backend.text_cache_hits == hits
        second = backend.encode_text(prompts)
        assert backend.text_cache_hits == hits + 2
        assert torch.equal(first, second)

    def test_text_embedding_does_not_depend_on_the_other_prompts(self, backend):
        alone = backend._encode_prompts(["pole and cart"])
        batched = backend._encode_prompts(["pole and cart", "a much longer prompt " * 3])
        torch.testing.assert_close(_unit(alone[0:1]), _unit(batched[0:1]), atol=1e-5, rtol=1e-4)

    # -- text context --------------------------------------------------------------------
    def test_context_length_is_reported_and_longer_prompts_are_refused(self, backend):
        limit = backend.context_length
        assert isinstance(limit, int) and limit >= 8
        short = backend._count_tokens("pole and cart")
        assert 3 <= short <= limit
        # Grow a prompt one word at a time: the last one that fits is accepted and encodes,
        # the next is refused (not truncated) and names the setting.
        words = ["cart"]
        while backend._count_tokens(" ".join([*words, "cart"])) <= limit:
            words.append("cart")
        fits, too_long = " ".join(words), " ".join([*words, "cart"])
        assert backend._count_tokens(fits) <= limit < backend._count_tokens(too_long)
        assert backend.encode_text([fits]).shape == (1, backend.embed_dim)
        with pytest.raises(ConfigError, match=r"reward\.goal_prompts: .* tokens long.* at most"):
            backend.check_prompts(["pole and cart", too_long], "reward.goal_prompts")
        with pytest.raises(ConfigError, match="tokens long"):
            backend.encode_text([too_long])

    # -- preprocessing against the library's own processor -----------------------------
    def test_preprocessing_matches_the_library_processor(self, backend, case, frames):
        reference = case.reference_preprocess(to_pil(frames))
        self._check_preprocessing("reference", backend, frames, reference)

    def test_preprocessing_matches_other_library_processors(self, backend, case, frames):
        if not case.other_preprocess:
            pytest.skip("this library has a single reference processor")
        for name, fn in case.other_preprocess.items():
            self._check_preprocessing(name, backend, frames, fn(to_pil(frames)),
                                      self.other_max_pixel_levels)

    def _check_preprocessing(self, label, backend, frames, reference, bound=None):
        ours = backend.preprocessor(frames).cpu()
        assert ours.shape == reference.shape, "size / crop differ from the model's processor"
        levels = pixel_levels((ours - reference).abs(), backend.preprocessor.std)
        print(f"\n[{backend.name} vs {label} processor] max |diff| = "
              f"{(ours - reference).abs().max():.4f} normalised = {levels.max():.2f} pixel "
              f"levels; mean {levels.mean():.4f} levels; "
              f"{(levels > 0.5).float().mean():.2%} of values differ")
        assert levels.max() <= (self.max_pixel_levels if bound is None else bound) + 1e-3
        assert levels.mean() <= self.mean_pixel_levels

    def test_end_to_end_matches_the_library_path(self, backend, case, frames):
        # What a user would write: per-frame PIL, the library's processor, the saved model.
        reference = _unit(case.reference_image(case.reference_preprocess(to_pil(frames))))
        cosine = (backend.encode_images(frames).cpu() * reference).sum(-1)
        assert cosine.min() > 0.999, cosine

    # -- round trip through the real loading path ---------------------------------------
    def test_loaded_image_encoder_equals_the_saved_model(self, backend, case, frames):
        pixels = case.reference_preprocess(to_pil(frames))
        with torch.inference_mode():
            ours = backend._encode_pixels(pixels.to(backend.device, backend.dtype))
        torch.testing.assert_close(_unit(ours), _unit(case.reference_image(pixels)),
                                   atol=1e-5, rtol=1e-4)

    def test_loaded_text_encoder_equals_the_saved_model(self, backend, case):
        ours = backend.encode_text(PROMPTS).cpu()
        torch.testing.assert_close(ours, _unit(case.reference_text(PROMPTS)), atol=1e-5,
                                   rtol=1e-4)

    # -- precision ---------------------------------------------------------------------
    def test_bf16_weights_give_float32_embeddings_close_to_fp32(self, backend, case, frames):
        low = make_backend(dataclasses.replace(case.cfg, precision="bf16"), str(backend.device))
        assert next(low.model.parameters()).dtype == torch.bfloat16
        emb = low.encode_images(frames)
        assert emb.dtype == torch.float32
        assert (emb * backend.encode_images(frames)).sum(-1).min() > 0.98


class TestOpenCLIPContract(BackendContract):
    build = staticmethod(build_open_clip)


class TestHFCLIPContract(BackendContract):
    build = staticmethod(build_hf_clip)


class TestSiglipContract(BackendContract):
    build = staticmethod(build_siglip)


class TestToyPluginContract(BackendContract):
    build = staticmethod(build_toy)


class TestXCLIPContract(BackendContract):
    # Images are still videos here (each frame repeated for every frame the model reads).
    build = staticmethod(build_xclip)
