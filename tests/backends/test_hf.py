"""The transformers backends (hf_clip, siglip): loading rules and model-family details."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tests.backends.fixtures import build_hf_clip, build_siglip, make_frames
from vlmrm.cli import main
from vlmrm.config import RewardConfig
from vlmrm.errors import ModelUnavailableError
from vlmrm.run.build import make_backend

torch.set_num_threads(1)


# -- random weights when no config is at hand ----------------------------------------------
@pytest.mark.parametrize("backend", ["hf_clip", "siglip"])
def test_random_weights_of_an_unknown_name_use_the_default_config_loudly(backend, offline):
    cfg = RewardConfig(backend=backend, model="ViT-B-32/laion2b_s34b_b79k", pretrained=False,
                       cache_dir=str(offline))
    with pytest.warns(UserWarning, match="DEFAULT"):
        be = make_backend(cfg, "cpu")
    expected = {"hf_clip": (512, (224, 224), "shortest"), "siglip": (768, (224, 224), "squash")}
    assert (be.embed_dim, be.image_size, be.preprocessor.resize_mode) == expected[backend]
    emb = be.encode_images(make_frames(2))
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert be.encode_text(["pole and cart"]).shape == (1, be.embed_dim)


def test_random_weights_keep_a_local_models_architecture(tmp_path, offline):
    build_siglip(tmp_path)
    with pytest.warns(UserWarning, match="RANDOM weights"):
        be = make_backend(RewardConfig(backend="siglip", model=str(tmp_path), pretrained=False),
                          "cpu")
    assert be.embed_dim == 32 and be.image_size == (32, 32)


def test_model_of_the_wrong_family_is_refused_with_the_right_backend_named(tmp_path):
    build_siglip(tmp_path)
    with pytest.raises(ModelUnavailableError, match="reward.backend=siglip"):
        make_backend(RewardConfig(backend="hf_clip", model=str(tmp_path)), "cpu")


def test_unsupported_processor_settings_are_refused_not_ignored(tmp_path):
    build_hf_clip(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    cfg = json.loads(path.read_text())
    cfg["size"] = {"shortest_edge": 56}  # resize to 56, crop 48: not reproduced, so refused
    path.write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailableError, match="shortest_edge=56"):
        make_backend(RewardConfig(backend="hf_clip", model=str(tmp_path)), "cpu")


# -- CLIP details ---------------------------------------------------------------------------
def test_stand_in_clip_tokenizer_gives_open_clip_token_ids():
    import open_clip

    from vlmrm.backends.hf_clip_backend import clip_tokenizer

    tok = clip_tokenizer()
    for text in ["pole vertically upright on top of the cart", "A humanoid robot, kneeling!"]:
        ours = tok(text)["input_ids"]
        theirs = [i for i in open_clip.tokenize([text])[0].tolist() if i]
        assert ours == theirs


def test_hf_clip_reads_mean_std_and_size_from_the_processor_config(tmp_path):
    build_hf_clip(tmp_path)
    be = make_backend(RewardConfig(backend="hf_clip", model=str(tmp_path)), "cpu")
    pre = be.preprocessor
    assert (pre.size, pre.mean, pre.std, pre.resize_mode) == (
        (48, 48), (0.40, 0.45, 0.55), (0.20, 0.25, 0.30), "shortest")


# -- SigLIP details -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    root = tmp_path_factory.mktemp("siglip")
    build_siglip(root)
    return make_backend(RewardConfig(backend="siglip", model=str(root)), "cpu")


def test_siglip_squashes_without_crop_using_the_processor_config(siglip):
    pre = siglip.preprocessor
    assert (pre.resize_mode, pre.size, pre.mean) == ("squash", (32, 32), (0.40, 0.45, 0.55))
    # A wide frame keeps its left and right edges (a centre crop would cut them off).
    frame = torch.zeros(1, 32, 96, 3, dtype=torch.uint8)
    frame[:, :, :8] = 255
    assert siglip.preprocessor(frame)[0, :, :, 0].min() > 0


def test_siglip_pads_text_to_max_length_as_trained(siglip):
    """SigLIP pools the last position: padding to the longest prompt would change embeddings."""
    prompt = "pole and cart"
    ours = siglip._encode_prompts([prompt])
    ids = siglip.tokenizer([prompt], return_tensors="pt")["input_ids"]  # no padding
    assert ids.shape[1] < siglip.max_length
    with torch.inference_mode():
        unpadded = siglip.model.get_text_features(input_ids=ids).pooler_output
        padded = siglip.tokenizer([prompt], padding="max_length", max_length=siglip.max_length,
                                  return_tensors="pt")["input_ids"]
        full = siglip.model.get_text_features(input_ids=padded).pooler_output
    torch.testing.assert_close(ours, full)
    assert not torch.allclose(ours, unpadded, atol=1e-3)  # the pitfall this guards against


def test_siglip_logit_scale_and_bias_do_not_enter_embeddings(siglip):
    frames = make_frames(2)
    before = siglip.encode_images(frames), siglip._encode_prompts(["a cart"])
    with torch.no_grad():
        siglip.model.logit_scale.add_(3.0)
        siglip.model.logit_bias.add_(-7.0)
    after = siglip.encode_images(frames), siglip._encode_prompts(["a cart"])
    torch.testing.assert_close(before, after)


# -- hub ids served from the cache ----------------------------------------------------------
def _fake_hub_cache(cache: Path, repo: str, build) -> Path:
    """Lay a saved model out as huggingface_hub's cache does (refs/main -> snapshot)."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    build(snapshot)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0" * 40)
    return snapshot


@pytest.mark.parametrize("backend,build", [("hf_clip", build_hf_clip), ("siglip", build_siglip)])
def test_cached_hub_id_loads_offline(backend, build, offline, tmp_path):
    case = _fake_hub_cache(tmp_path / "cache", f"vlmrm-test/tiny-{backend}", build)
    cfg = RewardConfig(backend=backend, model=f"vlmrm-test/tiny-{backend}",
                       cache_dir=str(tmp_path / "cache"))
    start = time.perf_counter()
    from_cache = make_backend(cfg, "cpu")
    assert time.perf_counter() - start < 15
    from_dir = make_backend(RewardConfig(backend=backend, model=str(case)), "cpu")
    frames = make_frames(2)
    torch.testing.assert_close(from_cache.encode_images(frames), from_dir.encode_images(frames))


def test_cached_config_without_weights_gives_the_offline_message(offline, tmp_path, capsys):
    snapshot = _fake_hub_cache(tmp_path / "cache", "vlmrm-test/partial", build_hf_clip)
    (snapshot / "model.safetensors").unlink()
    code = main(["backends", "--check", "hf_clip", "vlmrm-test/partial",
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "'vlmrm-test/partial'" in err and "download it with:" in err
