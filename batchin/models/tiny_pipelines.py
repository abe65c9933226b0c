"""Tiny randomly initialised diffusers pipelines, built in code.

No registry here ships real image or video weights, so the embedded image and video models are
these: real diffusers pipeline classes (StableDiffusionPipeline, TextToVideoSDPipeline) with a
two-block UNet, a two-block VAE, a two-layer CLIP text encoder and a byte-level CLIP tokenizer,
every weight drawn from a seeded generator. They exercise the whole serving path (text encoding,
denoising loop, VAE decode, progress callbacks, PNG and MP4 encoding) and produce coloured noise.
The catalog labels them "random weights — not a real model"; they must never pose as one.

The same seed always builds the same weights (the global torch RNG is left untouched), and a pipeline
saved with `save_pretrained` loads back through `DiffusionPipeline.from_pretrained` like any real
one, which is how the configured-weights path is tested.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RANDOM_WEIGHTS_NOTE", "tiny_image_pipeline", "tiny_video_pipeline"]

RANDOM_WEIGHTS_NOTE = "random weights — not a real model"
_TEXT_LENGTH = 32  # tokens the tiny text encoder sees (longer prompts are truncated)
_HIDDEN = 32


def _module(name: str) -> Any:
    # Imported when a pipeline is built (torch + diffusers take seconds), and typed loosely:
    # diffusers' constructors carry no annotations.
    return importlib.import_module(name)


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol alone and word-final, plus the two specials:
    every prompt tokenises (one token per byte) without a merges table or any file."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    symbols = [chr(code) for code in codes]
    vocab: dict[str, int] = {}
    for symbol in [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]:
        vocab[symbol] = len(vocab)
    return vocab


def _text_parts() -> tuple[Any, Any]:
    transformers = _module("transformers")
    vocab = _byte_level_vocab()
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=_TEXT_LENGTH)
    config = transformers.CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=_TEXT_LENGTH,
        projection_dim=_HIDDEN,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    return tokenizer, transformers.CLIPTextModel(config).eval()


def _vae() -> Any:
    return (
        _module("diffusers")
        .AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        )
        .eval()
    )


def _scheduler() -> Any:
    return _module("diffusers").DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def tiny_image_pipeline(seed: int = 0) -> Any:
    """A StableDiffusionPipeline of ~2M random parameters (64x64 natively)."""
    torch, diffusers = _module("torch"), _module("diffusers")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer, text_encoder = _text_parts()
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=_HIDDEN,
            norm_num_groups=8,
            attention_head_dim=4,
        ).eval()
        vae = _vae()
    pipeline = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def tiny_video_pipeline(seed: int = 0) -> Any:
    """A TextToVideoSDPipeline (3-D UNet with temporal attention) of ~1.5M random parameters."""
    torch, diffusers = _module("torch"), _module("diffusers")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer, text_encoder = _text_parts()
        unet = diffusers.UNet3DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=_HIDDEN,
            attention_head_dim=8,
            norm_num_groups=8,
        ).eval()
        vae = _vae()
    pipeline = diffusers.TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_scheduler()
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
