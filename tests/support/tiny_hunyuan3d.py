"""Random-weight Hunyuan3D-2 shape folders built from hy3dgen's own classes, saved in the published layout.

`write_shape_folder(path, config)` builds the DiT, the ShapeVAE and the image conditioner (a transformers Dinov2
model, its config embedded in config.yaml as the published files do, so nothing is fetched) from `config`,
and writes config.yaml + model.fp16.safetensors ("model.*", "vae.*", "conditioner.*" keys), exactly what
Hunyuan3DDiTFlowMatchingPipeline.from_single_file reads.

Random weights decode to a field that never crosses the surface level. `make_field_cross_zero` rewires the
VAE's geometry decoder so its output is a sphere-like function of the query point, cos(2x)+cos(2y)+cos(2z)-2.2
(zero on a closed surface of radius ~0.67 inside the [-1, 1] box), with the latent-dependent attention and MLP
branches kept but scaled down, so the DiT's latents still move the surface a little. Used by the tests (tiny
sizes) and by benchmarks/mesh_backend.py --random (the published 2mini / 2.0 sizes, for timing).
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

FIELD_OFFSET = 2.2  # cos(2x)+cos(2y)+cos(2z) - 2.2: positive (inside) around the centre, negative on the box's faces
BRANCH_SCALE = 0.02  # how much of the random attention / MLP residual stays: latents deform the sphere slightly


def _dino(hidden: int, layers: int, heads: int, image_size: int, swiglu: bool = False, mlp_ratio: int = 4) -> dict:
    return {"attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
            "hidden_size": hidden, "image_size": image_size, "initializer_range": 0.02, "layer_norm_eps": 1e-6,
            "layerscale_value": 1.0, "mlp_ratio": mlp_ratio, "model_type": "dinov2", "num_attention_heads": heads,
            "num_channels": 3, "num_hidden_layers": layers, "patch_size": 14, "qkv_bias": True, "use_swiglu_ffn": swiglu}


def config_for(*, dit_hidden: int, dit_heads: int, depth: int, single: int, in_channels: int, num_latents: int,
               vae_width: int, vae_heads: int, vae_layers: int, dino: dict, image_size: int, processor_size: int,
               turbo: bool, scale_factor: float = 1.0) -> dict:
    scheduler = ({"target": "hy3dgen.shapegen.schedulers.ConsistencyFlowMatchEulerDiscreteScheduler",
                  "params": {"num_train_timesteps": 1000, "pcm_timesteps": 100}} if turbo else
                 {"target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
                  "params": {"num_train_timesteps": 1000}})
    return {
        "model": {"target": "hy3dgen.shapegen.models.Hunyuan3DDiT", "params": {
            "in_channels": in_channels, "context_in_dim": dino["hidden_size"], "hidden_size": dit_hidden, "mlp_ratio": 4.0,
            "num_heads": dit_heads, "depth": depth, "depth_single_blocks": single, "axes_dim": [dit_hidden // dit_heads],
            "theta": 10000, "qkv_bias": True, "guidance_embed": turbo}},
        "vae": {"target": "hy3dgen.shapegen.models.ShapeVAE", "params": {
            "num_latents": num_latents, "embed_dim": in_channels, "num_freqs": 8, "include_pi": False, "heads": vae_heads,
            "width": vae_width, "num_decoder_layers": vae_layers, "qkv_bias": False, "qk_norm": True,
            "scale_factor": scale_factor, "geo_decoder_mlp_expand_ratio": 4, "geo_decoder_downsample_ratio": 1,
            "geo_decoder_ln_post": True}},
        "conditioner": {"target": "hy3dgen.shapegen.models.SingleImageEncoder", "params": {"main_image_encoder": {
            "type": "DinoImageEncoder", "kwargs": {"config": dino, "image_size": image_size, "use_cls_token": True}}}},
        "scheduler": scheduler,
        "image_processor": {"target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
                            "params": {"size": processor_size, "border_ratio": 0.15}},
    }


def tiny_config(turbo: bool = False) -> dict:
    """A few thousand parameters each: loads and runs in about a second on a CPU."""
    return config_for(dit_hidden=32, dit_heads=2, depth=1, single=1, in_channels=8, num_latents=32, vae_width=32,
                      vae_heads=2, vae_layers=1, dino=_dino(32, 1, 2, 56, mlp_ratio=2), image_size=56, processor_size=64,
                      turbo=turbo)


# The published architectures (tencent/Hunyuan3D-2mini hunyuan3d-dit-v2-mini*, tencent/Hunyuan3D-2
# hunyuan3d-dit-v2-0*): DiT 1024 wide (2mini: 8 double + 16 single blocks; 2.0: 16 + 32), ShapeVAE 16 decoder
# layers over 512 (2mini) or 3072 (2.0) latents, DINOv2-giant conditioner at 518 px.
DINO_GIANT = _dino(1536, 40, 24, 518, swiglu=True)


def full_config(family: str, turbo: bool) -> dict:
    if family == "2mini":
        return config_for(dit_hidden=1024, dit_heads=16, depth=8, single=16, in_channels=64, num_latents=512,
                          vae_width=1024, vae_heads=16, vae_layers=16, dino=DINO_GIANT, image_size=518,
                          processor_size=512, turbo=turbo, scale_factor=1.0188137142395404)
    if family == "2.0":
        return config_for(dit_hidden=1024, dit_heads=16, depth=16, single=32, in_channels=64, num_latents=3072,
                          vae_width=1024, vae_heads=16, vae_layers=16, dino=DINO_GIANT, image_size=518,
                          processor_size=512, turbo=turbo, scale_factor=0.9990943042622529)
    raise ValueError(f"unknown family {family!r} (2mini or 2.0)")


def make_field_cross_zero(vae) -> None:
    """Rewire the geometry decoder (see the module docstring) in place."""
    import torch

    decoder = vae.geo_decoder
    embedder = decoder.fourier_embedder
    freqs = embedder.frequencies.tolist()
    f = freqs.index(2.0)  # include_pi false: frequencies 1, 2, 4 ...; cos(2x) is in the embedding
    n_freqs = len(freqs)
    with torch.no_grad():
        proj = decoder.query_proj
        proj.weight.zero_()
        proj.bias.zero_()
        for d in range(3):  # embedding layout: [x, y, z, sin(d*F + f) ..., cos(d*F + f) ...]
            cos_index = 3 + 3 * n_freqs + d * n_freqs + f
            proj.weight[0, cos_index] = 1.0
            proj.weight[1, cos_index] = -1.0
        proj.bias[0], proj.bias[1] = -FIELD_OFFSET, FIELD_OFFSET
        proj.bias[2], proj.bias[3] = 1.0, -1.0  # constant pair: ln_post keeps the field smooth instead of a sign step
        block = decoder.cross_attn_decoder
        block.attn.c_proj.weight.mul_(BRANCH_SCALE)
        block.attn.c_proj.bias.mul_(BRANCH_SCALE)
        block.mlp.c_proj.weight.mul_(BRANCH_SCALE)
        block.mlp.c_proj.bias.mul_(BRANCH_SCALE)
        if decoder.enable_ln_post:
            decoder.ln_post.weight.fill_(1.0)
            decoder.ln_post.bias.zero_()
        decoder.output_proj.weight.zero_()
        decoder.output_proj.weight[0, 0] = 1.0
        decoder.output_proj.bias.zero_()


def build_modules(config: dict, seed: int = 0):
    """(dit, vae, conditioner) with random weights from `config`, the VAE's field made to cross zero."""
    import torch

    from tools.backends._torchvision_standin import conditioner_module

    conditioner_module()  # hy3dgen's conditioner needs torchvision.transforms (or the stand-in) to import
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    torch.manual_seed(seed)
    cfg = copy.deepcopy(config)
    dit = instantiate_from_config(cfg["model"])
    vae = instantiate_from_config(cfg["vae"])
    conditioner = instantiate_from_config(cfg["conditioner"])
    make_field_cross_zero(vae)
    return dit, vae, conditioner


def write_shape_folder(folder: Path, config: dict, seed: int = 0) -> Path:
    """config.yaml + model.fp16.safetensors in `folder` (created), as in the published repositories."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit, vae, conditioner = build_modules(config, seed)
    tensors = {}
    for prefix, module in (("model", dit), ("vae", vae), ("conditioner", conditioner)):
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().to(torch.float16).contiguous().clone()
    save_file(tensors, str(folder / "model.fp16.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder
