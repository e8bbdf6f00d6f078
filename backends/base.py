"""The abstract reward backend: a vision-language model seen as two encoders."""

from __future__ import annotations

import abc
import warnings
from collections.abc import Sequence

import torch

from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.compiled import CompiledOrEager
from vlmrm.errors import ConfigError

#: ``reward.precision`` names -> weight dtypes. The config schema lists the same names
#: (``vlmrm.config.schema.PRECISIONS``, a leaf that imports nothing of ours; a test keeps
#: the two equal), so the contract plugins build on does not depend on the config package.
DTYPES: dict[str, torch.dtype] = {"32": torch.float32, "bf16": torch.bfloat16,
                                  "16": torch.float16}


#: Backend kinds: what a model scores, and so which reward model and formulas it takes.
#: ``embedding``: one frame and the prompts, embedded in one space (CLIP, SigLIP);
#: ``video``: a window of consecutive frames and the prompts, embedded in one space (X-CLIP);
#: ``judge``: a generative VLM answering a question about a frame (SmolVLM, Qwen-VL, ...).
EMBEDDING, VIDEO, JUDGE = "embedding", "video", "judge"
KINDS = (EMBEDDING, VIDEO, JUDGE)


class ModelSettings:
    """What every backend kind is built with (the keywords ``make_backend`` passes), moving
    its weights (``self.model``, loaded by the subclass) and describing itself."""

    #: Registry name; set by subclasses.
    name: str = ""
    #: One line telling users how to name a model for this backend.
    model_naming: str = ""
    model: torch.nn.Module

    def __init__(self, model: str, *, pretrained: bool = True,
                 device: str | torch.device = "cpu", precision: str = "32",
                 batch_size: int = 32, cache_dir: str | None = None,
                 model_config: str | None = None) -> None:
        if precision not in DTYPES:
            raise ValueError(f"precision={precision!r} not in {list(DTYPES)}")
        self.model_name = model
        self.pretrained = pretrained
        self.device = torch.device(device)
        self.dtype = DTYPES[precision]
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.model_config = model_config
        if not pretrained:
            warnings.warn(
                f"reward.pretrained=false: the {self.name} model {model!r} has RANDOM weights. "
                "Its rewards are meaningless; use this only for tests and timing.",
                stacklevel=4)  # the caller of the backend class (make_backend)

    def to(self, device: str | torch.device) -> ModelSettings:
        """Move the model to ``device`` (subclasses keep their weights in ``self.model``)."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model_name!r}, device={self.device}, "
                f"dtype={self.dtype}, batch_size={self.batch_size})")


class RewardBackend(ModelSettings, abc.ABC):
    """Image and text encoders of one VLM, with their preprocessing, batching and device.

    Subclasses load their model in ``__init__`` (calling ``super().__init__`` first) into
    ``self.model`` and set ``self.preprocessor``; they implement :meth:`_encode_pixels`,
    :meth:`_encode_prompts`, :attr:`embed_dim`, :attr:`context_length` and
    :meth:`_count_tokens`. Everything users call (:meth:`encode_images`,
    :meth:`encode_text`) is defined here, so every backend behaves the same.
    """

    #: One of :data:`KINDS`; ``vlmrm backends`` lists it and the wiring builds the reward
    #: model that fits it.
    kind: str = EMBEDDING
    #: Both towers; :meth:`to` moves it, and ``vlmrm backends --check`` counts its parameters.
    model: torch.nn.Module
    #: The model's own preprocessing (resize mode, size, mean, std), set by subclasses.
    preprocessor: ImagePreprocessor

    def __init__(self, model: str, **settings) -> None:
        super().__init__(model, **settings)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.text_cache_hits = 0
        self._compiled: CompiledOrEager | None = None
        self._upload = PinnedUpload()
        self._channels_last = False

    # -- implemented by subclasses -------------------------------------------------------
    @abc.abstractmethod
    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed preprocessed pixels ``[B, 3, h, w]`` (on device, model dtype) -> ``[B, D]``."""

    @abc.abstractmethod
    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Embed prompts -> ``[N, D]`` (not yet normalised)."""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """Dimension D of the joint embedding space."""

    @property
    @abc.abstractmethod
    def context_length(self) -> int:
        """The most tokens the text encoder reads (special tokens included)."""

    @abc.abstractmethod
    def _count_tokens(self, prompt: str) -> int:
        """Tokens ``prompt`` becomes with this model's tokenizer, special tokens included
        (before any truncation)."""

    # -- shared behaviour ----------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the image encoder's input."""
        return self.preprocessor.size

    @torch.inference_mode()
    def encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        """Embed raw uint8 frames ``[B, H, W, 3]`` -> L2-normalised float32 ``[B, D]``."""
        if frames.ndim != 4:
            raise ValueError(f"expected frames [B, H, W, 3], got shape {tuple(frames.shape)}")
        if len(frames) == 0:  # split() would yield one empty chunk that some models reject
            return torch.empty(0, self.embed_dim, device=self.device)
        out = []
        for chunk in frames.split(self.batch_size):
            pixels = self.preprocessor(self._to_device(chunk), self.dtype)
            out.append(_normalize(self._encode_chunk(pixels)))
        return torch.cat(out)

    def compile_image_encoder(self) -> None:
        """``reward.compile``: ``torch.compile`` the image encoder (eager, with one warning,
        where compiling fails). Chunks are then padded to ``batch_size`` frames, so that one
        compiled graph serves every chunk (a new shape would compile again)."""
        self._compiled = CompiledOrEager(self._encode_pixels, "reward.compile", dynamic=False)

    def _to_device(self, chunk: torch.Tensor) -> torch.Tensor:
        """uint8 frames onto the device; to a GPU through pinned memory, so that the copy
        runs asynchronously (a copy from pageable memory blocks the CPU until it is done)."""
        if self.device.type == "cuda" and chunk.device.type == "cpu":
            return self._upload(chunk, self.device)
        return chunk.to(self.device, non_blocking=True)

    def _encode_chunk(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            # Channels-last lets cuDNN run the (patch-embedding or ResNet) convolutions with
            # NHWC tensor-core kernels in bf16/fp16; the model's conv weights follow once.
            if not self._channels_last:
                self.model.to(memory_format=torch.channels_last)
                self._channels_last = True
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        if self._compiled is None:
            return self._encode_pixels(pixels)
        n = len(pixels)
        if n < self.batch_size:
            pixels = torch.cat([pixels, pixels.new_zeros(self.batch_size - n, *pixels.shape[1:])])
        return self._compiled(pixels)[:n]

    def check_prompts(self, prompts: Sequence[str], key: str = "prompt") -> None:
        """Refuse prompts longer than the text encoder's context.

        Refused rather than truncated: a truncated prompt silently drops its end (often the
        words that name the goal), and the run would optimise a reward for another
        sentence. ``key`` names the setting in the message (e.g. ``reward.goal_prompts``).
        """
        for prompt in prompts:
            tokens = self._count_tokens(prompt)
            if tokens > self.context_length:
                raise ConfigError(
                    f"{key}: the prompt {prompt!r} is {tokens} tokens long, but the text "
                    f"encoder of {self.name} model {self.model_name!r} reads at most "
                    f"{self.context_length} (special tokens included). Shorten it.")

    @torch.inference_mode()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embed prompts -> L2-normalised float32 ``[N, D]``; each prompt is encoded once.
        Prompts longer than :attr:`context_length` are refused (:meth:`check_prompts`)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        self.text_cache_hits += len(prompts) - len(missing)
        if missing:
            self.check_prompts(missing)
            emb = _normalize(self._encode_prompts(missing))
            self._text_cache.update(zip(missing, emb, strict=True))
        return torch.stack([self._text_cache[p] for p in prompts])

    def to(self, device: str | torch.device) -> RewardBackend:
        super().to(device)
        self._channels_last = False  # set again on the first CUDA batch
        return self


class VideoBackend(RewardBackend):
    """A backend whose vision side embeds a video: ``num_frames`` consecutive frames.

    Subclasses implement :meth:`_encode_videos` and :attr:`num_frames` besides the text side.
    A single image is a still video (the frame repeated ``num_frames`` times), which gives
    :meth:`encode_images` and :meth:`_encode_pixels` their meaning here.
    """

    kind = VIDEO

    @property
    @abc.abstractmethod
    def num_frames(self) -> int:
        """Frames per video the model reads (its own count)."""

    @abc.abstractmethod
    def _encode_videos(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed preprocessed videos ``[B, T, 3, h, w]`` (on device, model dtype) -> ``[B, D]``."""

    def check_window(self, window: int | None) -> int:
        """Frames per reward for ``reward.window`` (None: the model's own count). This default
        is for models whose temporal layers are built for exactly ``num_frames`` frames."""
        if window is None or window == self.num_frames:
            return self.num_frames
        raise ConfigError(
            f"reward.window={window}: the {self.name} model {self.model_name!r} reads exactly "
            f"{self.num_frames} frames per video (its temporal layers are built for that "
            f"many). Set reward.window=null or reward.window={self.num_frames}.")

    def _still(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.unsqueeze(1).expand(-1, self.num_frames, *pixels.shape[1:])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._encode_videos(self._still(pixels))

    def _encode_chunk(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._encode_video_chunk(self._still(pixels))

    @torch.inference_mode()
    def encode_videos(self, windows: torch.Tensor) -> torch.Tensor:
        """Embed uint8 windows ``[B, T, H, W, 3]`` (oldest frame first) -> L2-normalised
        float32 ``[B, D]``, ``batch_size`` windows per forward pass."""
        if windows.ndim != 5 or windows.shape[1] != self.num_frames:
            raise ValueError(f"expected windows [B, {self.num_frames}, H, W, 3], got shape "
                             f"{tuple(windows.shape)}")
        if len(windows) == 0:
            return torch.empty(0, self.embed_dim, device=self.device)
        out = []
        for chunk in windows.split(self.batch_size):
            frames = self._to_device(chunk.reshape(-1, *chunk.shape[2:]))
            pixels = self.preprocessor(frames, self.dtype)
            out.append(_normalize(self._encode_video_chunk(pixels.unflatten(0, chunk.shape[:2]))))
        return torch.cat(out)

    def compile_image_encoder(self) -> None:
        """``reward.compile`` for the video encoder (see the base class)."""
        self._compiled = CompiledOrEager(self._encode_videos, "reward.compile", dynamic=False)

    def _encode_video_chunk(self, pixels: torch.Tensor) -> torch.Tensor:
        # No channels-last here: it is a 4-D memory format, and these are 5-D videos.
        if self._compiled is None:
            return self._encode_videos(pixels)
        n = len(pixels)
        if n < self.batch_size:
            pixels = torch.cat([pixels, pixels.new_zeros(self.batch_size - n, *pixels.shape[1:])])
        return self._compiled(pixels)[:n]


class PinnedUpload:
    """Host-to-GPU copies of uint8 frame chunks through two page-locked buffers, used in turn.

    ``copy_`` into the pinned buffer is a plain CPU memcpy; the copy to the GPU is then
    queued on the current stream without blocking, ahead of the preprocessing and the
    encoder that read it. A buffer is written again only after the copy out of it has
    finished (an event per buffer), so the CPU fills one while the GPU reads the other.
    Memory: 2 x reward.batch_size frames (800 frames of 224 x 224: 2 x 120 MB).
    """

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor | None] = [None, None]
        self._copied: list[torch.cuda.Event | None] = [None, None]
        self._turn = 0

    def __call__(self, chunk: torch.Tensor, device: torch.device) -> torch.Tensor:
        slot, self._turn = self._turn, 1 - self._turn
        if self._copied[slot] is not None:
            self._copied[slot].synchronize()
        buffer = self._buffers[slot]
        if buffer is None or buffer.numel() < chunk.numel() or buffer.dtype != chunk.dtype:
            buffer = torch.empty(chunk.numel(), dtype=chunk.dtype, pin_memory=True)
            self._buffers[slot] = buffer
        staged = buffer[:chunk.numel()].view(chunk.shape)
        staged.copy_(chunk)
        on_device = staged.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        self._copied[slot] = event
        return on_device


def _normalize(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
