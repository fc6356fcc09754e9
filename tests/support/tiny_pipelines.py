"""Tiny random-weight diffusers pipelines built from configs, saved with `save_pretrained` (offline, seconds).

Real diffusers / transformers classes with tiny sizes, so any code that loads a pipeline folder with
`from_pretrained(..., local_files_only=True)` runs on them for real. The CLIP tokenizer is built from a
vocabulary and merges file written here (every byte-level character, with and without the end-of-word mark),
so nothing is fetched from a hub. Reusable by other tests and benchmarks:

    from tiny_pipelines import save_tiny_sd, save_tiny_sdxl
    folder = save_tiny_sd(tmp_path / "tiny-sd")
"""
from __future__ import annotations

import json
from pathlib import Path

# Sizes: sample_size 8 latents x VAE factor 8 = 64 px native; the VAE has four blocks so that its scale
# factor (8) matches real Stable Diffusion and size rounding is exercised as it is for users.
VAE_BLOCKS = (8, 8, 8, 8)
TEXT_HIDDEN = 32
VOCAB_SIZE = 1000
BOS_ID, EOS_ID = 517, 518  # where <|startoftext|> and <|endoftext|> land in write_clip_tokenizer_files' vocabulary


def _bytes_to_unicode() -> list[str]:
    # GPT-2 / CLIP byte-level alphabet: 256 printable characters standing for the 256 byte values.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_clip_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt for a character-level CLIP BPE tokenizer (a few merges so BPE has work to do)."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _bytes_to_unicode()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("o", "n</w>"), ("e", "r</w>")]
    tokens += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) <= VOCAB_SIZE and (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (BOS_ID, EOS_ID)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def tiny_tokenizer(work: Path):
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(work)  # the layout of a real pipeline's tokenizer/ folder
    return CLIPTokenizer.from_pretrained(str(work), model_max_length=77)


def _text_config(**extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=EOS_ID, hidden_size=TEXT_HIDDEN, intermediate_size=37,
                          layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=VOCAB_SIZE,
                          max_position_embeddings=77, **extra)


def _vae():
    from diffusers import AutoencoderKL

    n = len(VAE_BLOCKS)
    return AutoencoderKL(block_out_channels=VAE_BLOCKS, in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                         layers_per_block=1, norm_num_groups=4, sample_size=64)


def save_tiny_sd(folder: Path, *, turbo: bool = False, seed: int = 0) -> Path:
    """A tiny StableDiffusionPipeline (SD 1.5 layout: UNet, VAE, CLIP text model, tokenizer, Euler scheduler)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=TEXT_HIDDEN, attention_head_dim=2, norm_num_groups=4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing" if turbo else "leading", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=CLIPTextModel(_text_config()), tokenizer=tiny_tokenizer(folder / "_tok"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    _drop(folder / "_tok")
    return folder


def save_tiny_sdxl(folder: Path, *, turbo: bool = True, seed: int = 0) -> Path:
    """A tiny StableDiffusionXLPipeline: two text encoders (the second with a projection), text_time embeddings."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    time_dim, projection = 8, 32
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=6 * time_dim + projection,
                                cross_attention_dim=2 * TEXT_HIDDEN, norm_num_groups=4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing" if turbo else "leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=_vae(), text_encoder=CLIPTextModel(_text_config()),
                                     text_encoder_2=CLIPTextModelWithProjection(_text_config(projection_dim=projection)),
                                     tokenizer=tiny_tokenizer(folder / "_tok"), tokenizer_2=tiny_tokenizer(folder / "_tok"),
                                     unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(folder)
    _drop(folder / "_tok")
    return folder


def _drop(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
