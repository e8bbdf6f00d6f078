"""open_clip backend through the same loading path users use, on a tiny local model."""

import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vlmrm.backends.openclip_backend import OpenCLIPBackend
from vlmrm.errors import ModelUnavailableError


def frames(n=6, h=120, w=180, seed=0):
    """Uniform random uint8 frames: the hardest case for resize rounding."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


def test_checkpoint_round_trip_reproduces_the_saved_model(tiny_openclip, tmp_path):
    import open_clip

    backend = OpenCLIPBackend(tiny_openclip.reference, model_config=str(tiny_openclip.config_path))
    saved = torch.load(tiny_openclip.checkpoint, weights_only=True)
    for key, value in backend.model.state_dict().items():
        torch.testing.assert_close(value, saved[key])
    # .safetensors goes through the same path and gives the same embeddings.
    st_path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in saved.items()}, str(st_path))
    other = OpenCLIPBackend(f"{tiny_openclip.name}/{st_path}")
    x = frames()
    torch.testing.assert_close(backend.encode_images(x), other.encode_images(x))
    # And a model built with open_clip directly embeds identically.
    ref = open_clip.create_model(tiny_openclip.name, pretrained=str(tiny_openclip.checkpoint))
    ref.eval()
    tokens = open_clip.get_tokenizer(tiny_openclip.name)(["a cart"])
    expected = torch.nn.functional.normalize(ref.encode_text(tokens), dim=-1)
    torch.testing.assert_close(backend.encode_text(["a cart"]), expected.detach())


def test_embeddings_are_unit_norm_with_declared_shape(tiny_openclip):
    backend = OpenCLIPBackend(tiny_openclip.reference)
    emb = backend.encode_images(frames(5))
    assert emb.shape == (5, backend.embed_dim) == (5, 32)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(5))
    assert backend.image_size == (64, 64)


def test_batched_preprocessing_matches_open_clip_preprocess(tiny_openclip):
    import open_clip

    _, _, preprocess = open_clip.create_model_and_transforms(
        tiny_openclip.name, pretrained=str(tiny_openclip.checkpoint))
    backend = OpenCLIPBackend(tiny_openclip.reference)
    x = frames(8, h=400, w=600)  # CartPole's native render size
    ours = backend.preprocessor(x)
    reference = torch.stack([preprocess(Image.fromarray(f.numpy())) for f in x])
    diff = (ours - reference).abs().max().item()
    one_level = 1 / 255 / min(backend.preprocessor.std)
    print(f"max abs difference vs open_clip preprocess: {diff:.4f} "
          f"({diff / one_level:.2f} pixel levels)")
    # PIL and torchvision round bicubic-resized uint8 pixels differently: at most ~1 level.
    assert diff <= 1.01 * one_level
    assert ours.shape == reference.shape == (8, 3, 64, 64)


def test_random_weights_only_when_asked_and_loudly(tiny_openclip):
    with pytest.warns(UserWarning, match="RANDOM weights"):
        OpenCLIPBackend("vlmrm-test-tiny", pretrained=False)


@pytest.mark.parametrize("model, fragment", [
    ("NoSuchArch/laion", "not an open_clip architecture"),
    ("vlmrm-test-tiny/not_a_tag", "not a pretrained tag"),
    ("vlmrm-test-tiny//no/such/file.pt", "does not exist"),
    ("ViT-B-32/laion2b_s34b_b79k", "cannot be reached"),
])
def test_unloadable_models_fail_fast_with_a_clear_message(tiny_openclip, model, fragment):
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=fragment):
        OpenCLIPBackend(model)
    assert time.perf_counter() - start < 10  # no minutes of hub retries


def test_encode_images_handles_numpy_like_uint8_frames_of_any_size(tiny_openclip):
    backend = OpenCLIPBackend(tiny_openclip.reference)
    a = backend.encode_images(torch.from_numpy(np.zeros((2, 30, 50, 3), dtype=np.uint8)))
    b = backend.encode_images(torch.from_numpy(np.zeros((2, 300, 500, 3), dtype=np.uint8)))
    torch.testing.assert_close(a, b)  # a black frame is black at any resolution
