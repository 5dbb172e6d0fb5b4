"""Prefix tuning (Li & Liang 2021) with its MLP re-parameterization, as unified-dt uses it.

Per stack (encoder self-attention, and decoder self-attention on seq2seq backbones) a table P' of
m rows goes through Linear(d→d_P)-tanh-Linear(d_P→layers·2·d_kv·heads), no biases, giving every
layer m extra keys and values. On T5-base with m=120, d_P=24 that is
2 · (120·768 + 768·24 + 24·18432) = 1,105,920 (unified-dt notes §1.2, §6.1). peft's prefix
tuning adds no encoder prefix, has MLP biases and cannot give back this flat vector.

Options for the survey's prefixes (docs/methods.md):

* ``reparameterize=False``: the direct form, the prefix keys and values themselves are θ
  (layers·2·m·d_kv·heads per stack; Li & Liang's prefix after the MLP is dropped, OpenDelta's
  ``reparameterize=False``). Rows start N(0, 1), as OpenDelta's ``torch.randn``.
* ``cross=True``: a third stack on the decoder's cross-attention (keys and values in front of the
  encoder's), as Li & Liang's encoder-decoder prefix (their BART code has encoder, decoder and
  cross prefixes). Each stack has its own table and MLP.

A key/value row is as wide as the attention's inner dimension (heads · d_kv): d on every
backbone here except T5 v1.1 small (6 · 64 = 384 against d = 512).

Mechanics: a pre-hook on each self-attention module hands it a stand-in KV cache that puts
the layer's prefix rows in front of its keys and values (wrapping the real cache while
decoding), and widens the attention mask with m always-visible columns. On decoder-only backbones
(Llama, Qwen2, GPT-2) the one self-attention stack gets its prefix through the same stand-in; a row
holds the model's key/value heads (grouped-query attention has fewer than query heads), and rotary
embeddings rotate only the real keys, so prefix keys carry no position. On T5 the prefix slots
take positions 0..m-1 and real tokens m..m+n-1 for the relative position bias, as the
reference implementation does (anchors §1.1).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod, DeltaOptionError, kaiming_uniform, normal_
from .targets import TARGETS, matching_modules


class PrefixStack(nn.Module):
    """The prefix table and its MLP for one stack of ``layers`` self-attention modules."""

    def __init__(self, m: int, d: int, hidden: int, layers: int, width: int | None = None,
                 reparameterize: bool = True) -> None:
        super().__init__()
        self.m, self.d, self.layers = m, d, layers
        self.width = width or d  # of one key/value row: heads · d_kv
        self.reparameterize = reparameterize
        if reparameterize:
            self.table = nn.Parameter(torch.zeros(m, d), requires_grad=False)
            self.down = nn.Linear(d, hidden, bias=False)
            self.up = nn.Linear(hidden, layers * 2 * self.width, bias=False)
        else:
            self.rows = nn.Parameter(torch.zeros(layers, 2, m, self.width), requires_grad=False)
        self._memo: tuple | None = None

    def parameters_of_theta(self) -> list[nn.Parameter]:
        return [self.table, self.down.weight, self.up.weight] if self.reparameterize else [self.rows]

    def key_values(self) -> torch.Tensor:
        """(layers, 2, m, width); computed once per set of weights, reused by every layer."""
        if not self.reparameterize:
            return self.rows
        weights = (self.table, self.down.weight, self.up.weight)
        stamp = tuple((id(w), w._version) for w in weights)
        if self._memo is None or self._memo[0] != stamp or torch.is_grad_enabled() != self._memo[2]:
            out = self.up(torch.tanh(self.down(self.table)))
            out = out.view(self.m, self.layers, 2, self.width).permute(1, 2, 0, 3)
            self._memo = (stamp, out, torch.is_grad_enabled(), weights)
        return self._memo[1]


def _widen_mask(mask: torch.Tensor | None, m: int) -> torch.Tensor | None:
    """Add m visible key columns in front of a 4-D attention mask (additive float or boolean)."""
    if mask is None:
        return None
    fill = True if mask.dtype == torch.bool else 0.0
    pad = torch.full((*mask.shape[:-1], m), fill, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


class _PrefixedCache:
    """Stands in for the KV cache of one self-attention call: every update returns the layer's
    prefix rows in front of the (cached, if a real cache is wrapped) keys and values.

    Reporting m already-seen tokens is what gives T5's relative-position bias the reference
    semantics: queries sit at positions m.., prefix keys at 0..m-1.
    """

    def __init__(self, rows: torch.Tensor, heads: int, inner) -> None:
        self.rows, self.heads, self.inner = rows, heads, inner  # rows: (2, m, d)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.rows.shape[-2] + (self.inner.get_seq_length(layer_idx) if self.inner is not None else 0)

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        if self.inner is not None:
            keys, values = self.inner.update(keys, values, layer_idx, *args, **kwargs)
        batch, m = keys.shape[0], self.rows.shape[-2]
        if self.rows.dim() == 4:  # one prefix per row, (2, batch, m, d): fused runs (deltaspace.train.fused)
            rows = self.rows.to(keys.dtype).view(2, batch, m, self.heads, -1).transpose(2, 3)
            return torch.cat([rows[0], keys], dim=2), torch.cat([rows[1], values], dim=2)
        rows = self.rows.to(keys.dtype).view(2, m, self.heads, -1).transpose(1, 2)  # (2, heads, m, d_head)
        return (torch.cat([rows[0].expand(batch, -1, -1, -1), keys], dim=2),
                torch.cat([rows[1].expand(batch, -1, -1, -1), values], dim=2))


#: What attention modules call their KV-cache argument: ``cache`` from transformers 5.25 on (the
#: old name still reaches them through a deprecation shim), ``past_key_values`` before.
CACHE_KWARGS = ("cache", "past_key_values")


class _AttentionPrefix:
    """A pre-hook that gives one self-attention module its layer's prefix keys and values."""

    def __init__(self, stack: PrefixStack, layer: int, attention: nn.Module, heads: int, cross: bool = False) -> None:
        self.stack, self.layer, self.heads, self.cross = stack, layer, heads, cross
        accepted = inspect.signature(attention.forward).parameters
        self.cache_kwarg = next((k for k in CACHE_KWARGS if k in accepted), CACHE_KWARGS[-1])
        attention.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        inner = None
        for key in CACHE_KWARGS:  # whichever name the caller used; a cache may be falsy (empty)
            passed = kwargs.pop(key, None)
            if passed is not None:
                inner = passed
        if self.cross:
            # Cross-attention recomputes the encoder's keys each call (no cross cache is filled):
            # the real cache's cross part would append them again at every decoding step.
            inner = None
        elif inner is not None and hasattr(inner, "self_attention_cache"):
            inner = inner.self_attention_cache
        kwargs[self.cache_kwarg] = _PrefixedCache(self.stack.key_values()[self.layer], self.heads, inner)
        for key in ("mask", "attention_mask"):
            if key in kwargs:
                kwargs[key] = _widen_mask(kwargs[key], self.stack.m)
        return args, kwargs


class Prefix(DeltaMethod):
    name = "prefix"
    defaults = {"m": 120, "hidden": 24, "reparameterize": True, "cross": False}
    families = ("t5", "bart", "bert", "roberta", "llama", "qwen2", "gpt2")
    needs_eager_attention = True  # it extends keys and 4-D masks inside attention

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        if backbone.family not in self.families:
            raise DeltaOptionError(f"prefix tuning is not implemented for the {backbone.family} family "
                                   f"(disentangled relative positions); supported: {', '.join(self.families)}")
        model = backbone.model
        targets = TARGETS[backbone.family]
        stacks: dict[str, list[nn.Module]] = {}
        for name, module in matching_modules(model, targets.self_attention):
            stack_name = "decoder" if ".decoder." in f".{name}" or backbone.kind == "decoder" else "encoder"
            stacks.setdefault(stack_name, []).append(module)
        if self.options["cross"]:
            if backbone.kind != "seq2seq":
                raise DeltaOptionError(f"prefix: cross=True needs an encoder-decoder backbone; {backbone.name} "
                                       f"is {backbone.kind}")
            stacks["cross"] = [module for _, module in matching_modules(model, targets.cross_attention)]
        d = backbone.hidden_size
        config = backbone.config
        heads = getattr(config, "num_heads", None) or getattr(config, "encoder_attention_heads", None) \
            or config.num_attention_heads
        d_kv = getattr(config, "d_kv", None) if backbone.family == "t5" else None
        width = heads * d_kv if d_kv else d
        if getattr(config, "num_key_value_heads", None):
            # grouped-query attention (Llama 3, Qwen2.5, SmolLM2): a prefix row holds the layer's
            # key/value heads, which the model repeats for its query heads after the cache
            heads = config.num_key_value_heads
            width = heads * (getattr(config, "head_dim", None) or d // config.num_attention_heads)
        device = next(model.parameters()).device
        params = []
        for stack_name, modules in sorted(stacks.items()):
            with torch.device(device):
                stack = PrefixStack(self.options["m"], d, self.options["hidden"], len(modules), width,
                                    self.options["reparameterize"])
            stack.requires_grad_(False)
            model.add_module(f"deltaspace_prefix_{stack_name}", stack)
            for layer, attention in enumerate(modules):
                _AttentionPrefix(stack, layer, attention, heads, cross=stack_name == "cross")
            params += stack.parameters_of_theta()
        return params

    def init_tensor(self, name, param, generator):
        if name.endswith(".table") or name.endswith(".rows"):
            # nn.Embedding's N(0, 1), as Li & Liang's table; OpenDelta's direct prefix is torch.randn too
            return normal_(param.shape, 1.0, generator)  # nn.Embedding's N(0, 1), as Li & Liang's table
        return kaiming_uniform(param.shape, generator)
