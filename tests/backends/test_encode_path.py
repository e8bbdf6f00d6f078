"""The shared scoring path of every backend (``RewardBackend.encode_images``): chunks of
``reward.batch_size`` frames, unchanged on CPU; ``reward.compile`` with one static shape.
(The CUDA parts, pinned-memory uploads and channels-last, need a GPU: not tested here.)"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.backends.fixtures import build_open_clip, make_frames
from vlmrm.backends.base import _normalize
from vlmrm.run.build import make_backend


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    with torch.no_grad():
        return build_open_clip(tmp_path_factory.mktemp("open_clip"))


def test_cpu_chunks_are_embedded_exactly_as_preprocess_then_encode(case):
    backend = make_backend(replace(case.cfg, batch_size=3), "cpu")
    frames = make_frames(8)
    with torch.inference_mode():
        plain = torch.cat([_normalize(backend._encode_pixels(backend.preprocessor(c, backend.dtype)))
                           for c in frames.split(3)])
    assert torch.equal(backend.encode_images(frames), plain)  # bit for bit: nothing added
    conv = next(m for m in backend.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # channels-last is for CUDA only


def test_compiled_encoder_sees_every_chunk_padded_to_the_batch_size(case, monkeypatch):
    shapes = []

    def recording_compile(fn, **kwargs):
        assert kwargs == {"dynamic": False}

        def run(pixels):
            shapes.append(tuple(pixels.shape))
            return fn(pixels)
        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    frames = make_frames(8)
    compiled = make_backend(replace(case.cfg, batch_size=3, compile=True), "cpu")
    eager = make_backend(replace(case.cfg, batch_size=3), "cpu")
    ours = compiled.encode_images(frames)
    assert [s[0] for s in shapes] == [3, 3, 3]  # 3 + 3 + 2 frames padded to 3: one shape
    assert ours.shape == (8, eager.embed_dim)
    torch.testing.assert_close(ours, eager.encode_images(frames), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_reward_compile_gives_the_eager_embeddings(case):
    frames = make_frames(5)
    compiled = make_backend(replace(case.cfg, batch_size=4, compile=True), "cpu")
    ours = compiled.encode_images(frames)
    assert compiled._compiled.is_compiled
    eager = make_backend(replace(case.cfg, batch_size=4), "cpu").encode_images(frames)
    torch.testing.assert_close(ours, eager, rtol=1e-4, atol=1e-5)
