"""Saving and loading a fitted subspace: each method's decoder (θ = decoder(I)) and what it is.

``subspace.json`` says, per method, which decoder kind it has and its shapes, so a later stage
rebuilds the exact modules and loads ``subspace.safetensors`` into them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write, write_json
from .fastfood import FastfoodProjection
from .projectors import PromptDecoder, UpProjection


def describe_decoder(decoder: nn.Module) -> dict:
    if isinstance(decoder, UpProjection):
        return {"kind": "linear", "size": decoder.size, "y": decoder.y}
    if isinstance(decoder, FastfoodProjection):
        return {"kind": "fastfood", "d": decoder.d, "sizes": decoder.sizes, "seed": decoder.seed}
    if isinstance(decoder, PromptDecoder):
        return {"kind": "prompt_decoder", "d_intrinsic": decoder.hidden.in_features,
                "hidden": decoder.hidden.out_features, "size": decoder.output.out_features}
    raise TypeError(f"cannot store a decoder of type {type(decoder).__name__}")


def build_decoder(info: dict) -> nn.Module:
    if info["kind"] == "linear":
        return UpProjection(info["size"], info["y"])
    if info["kind"] == "fastfood":
        # θ0 (the backbone's own weights) is not stored: attach it with `attach_theta0`.
        return FastfoodProjection(info["d"], info["sizes"], seed=info["seed"])
    # A prompt decoder's output is the flat n·d prompt; n and d only matter through their product.
    return PromptDecoder(1, info["size"], info["d_intrinsic"], info["hidden"])


def save_subspace(out: Path, decoders: dict[str, nn.Module], meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"{m}.{k}": v.detach().cpu().contiguous() for m, dec in decoders.items()
               for k, v in dec.state_dict().items()}
    atomic_write(out / "subspace.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    write_json({**meta, "decoders": {m: describe_decoder(d) for m, d in decoders.items()}}, out / "subspace.json")


def load_subspace(folder: str | Path) -> tuple[dict[str, nn.Module], dict]:
    """The frozen decoders of a fitted subspace, and its metadata."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path = folder / "subspace.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{folder}: no subspace.json; run `deltaspace fit-subspace` first")
    meta = json.loads(meta_path.read_text())
    tensors = load_file(str(folder / "subspace.safetensors"))
    decoders = {}
    for method, info in meta["decoders"].items():
        decoder = build_decoder(info)
        decoder.load_state_dict({k[len(method) + 1:]: v for k, v in tensors.items() if k.startswith(method + ".")})
        decoders[method] = decoder.requires_grad_(False)
    return decoders, meta


def attach_theta0(decoders: dict[str, nn.Module], runtimes: dict) -> None:
    """Give each Fastfood decoder θ0, fine-tuning's pre-trained weights, so it decodes θ0 + offset."""
    for method, decoder in decoders.items():
        if isinstance(decoder, FastfoodProjection):
            decoder.theta0 = runtimes[method].delta.init(0).to(decoder.blocks[0].G.device)


def save_vectors(out: Path, vectors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    atomic_write(out / "intrinsic.safetensors",
                 lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in vectors.items()}, str(tmp)))
