"""The delta-method library: paper parameter parity, the flat-vector contract, training."""

import pytest
import torch

from conftest import TINY_OPTIONS, adam_losses, toy_batch
from deltaspace.backbones import UnknownBackboneError, load_backbone
from deltaspace.deltas import DeltaOptionError, UnknownMethodError, build_delta, delta_size
from deltaspace.heads import make_head

TINY = ["tiny-t5", "tiny-bart", "tiny-bert"]
# The core methods of unified-dt, IPT and the survey, on every tiny family. The decomposition
# paper's variants run the same contract checks in tests/test_decomposition_methods.py.
CORE = sorted(TINY_OPTIONS)


@pytest.mark.parametrize("method,options", [
    ("adapter", {"r": 12}), ("prefix", {"m": 120, "hidden": 24}), ("lora", {"r": 10, "alpha": 16}),
])
def test_unified_dt_parity_on_t5_base(method, options):
    # unified-dt A.2: "the number of parameters of θ_tA, θ_tP and θ_tL are all 1105920".
    assert delta_size(method, "t5-base", **options) == 1105920


def test_ipt_prompt_size_on_bart_base_matches_peft():
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    ours = delta_size("prompt", "bart-base", n=100)
    assert ours == 76800
    model = AutoModelForSeq2SeqLM.from_config(load_backbone("tiny-bart").config)
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=5,
                                                          num_transformer_submodules=1))
    peft_count = sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad)
    assert peft_count == delta_size("prompt", "tiny-bart", n=5)


def _head(bb, delta):
    return make_head(bb, delta, ["yes", "no"] if bb.kind == "encoder" else None)


def _outputs(bb, delta, batch, theta=None):
    head = _head(bb, delta)
    with torch.no_grad():
        if theta is None:
            return head.loss(batch)
        with delta.bound(theta):
            return head.loss(batch)


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize("method", ["adapter", "lora", "bitfit"])
def test_zero_initialized_delta_leaves_backbone_unchanged(backbone, method):
    plain = load_backbone(backbone, seed=1)
    batch = toy_batch(plain)
    reference = _outputs(plain, _PlainDelta(), batch)
    bb = load_backbone(backbone, seed=1)
    delta = build_delta(method, bb, **TINY_OPTIONS[method])
    assert torch.allclose(_outputs(bb, delta, batch, delta.init(3)), reference, atol=1e-6)


class _PlainDelta:
    """No delta at all, for reference outputs."""

    class method:
        supports_kv_cache = True

    def prepare_inputs(self, inputs):
        return inputs


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize("method", CORE)
def test_flat_vector_contract(backbone, method):
    bb = load_backbone(backbone)
    delta = build_delta(method, bb, **TINY_OPTIONS[method])
    theta = delta.init(0)
    assert theta.shape == (delta.size,)
    assert torch.equal(theta, delta.init(0)), "init must be deterministic in the seed"
    # load(extract) round-trips exactly, and extract sees what load wrote.
    other = theta + torch.randn(delta.size) * 0.01
    delta.load(other)
    assert torch.equal(delta.extract(), other)
    delta.load(delta.extract())
    assert torch.equal(delta.extract(), other)
    # The manifest tiles θ exactly, in sorted name order.
    offsets = [s.offset for s in delta.manifest]
    assert offsets == sorted(offsets) and [s.name for s in delta.manifest] == sorted(s.name for s in delta.manifest)
    assert delta.manifest[-1].offset + delta.manifest[-1].numel == delta.size


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize("method", CORE)
def test_gradient_reaches_a_vector_upstream_of_theta(backbone, method):
    bb = load_backbone(backbone)
    delta = build_delta(method, bb, **TINY_OPTIONS[method])
    batch = toy_batch(bb)
    code = torch.zeros(3, requires_grad=True)
    up = torch.randn(delta.size, 3) * 0.01
    theta = delta.init(0) + up @ code  # a projector upstream of θ
    with delta.bound(theta):
        loss = _head(bb, delta).loss(batch)
    loss.backward()
    assert code.grad is not None and code.grad.abs().sum() > 0
    # Nothing of the frozen backbone collected a gradient.
    assert all(p.grad is None for p in bb.model.parameters())


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize("method", CORE)
def test_each_method_trains_on_each_tiny_backbone(backbone, method):
    bb = load_backbone(backbone)
    delta = build_delta(method, bb, **TINY_OPTIONS[method])
    batch = toy_batch(bb)
    head = _head(bb, delta)
    theta = delta.init(0).requires_grad_(True)
    # A soft prompt acts only through attention: on 2-layer random backbones it moves the loss
    # least, so it gets a weaker (still failing-if-broken) bar.
    lr, factor = {"prompt": (0.3, 0.98), "finetune": (3e-3, 0.8), "bitfit": (1e-2, 0.8)}.get(method, (1e-1, 0.8))
    losses = adam_losses(delta, head, batch, theta, lr=lr, steps=40)
    assert min(losses[-5:]) < factor * losses[0], losses


def test_prefix_matches_t5_cache_semantics():
    """Our T5 prefix equals HF's own past-key-value path: prefix slots at positions 0..m-1."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    bb = load_backbone("tiny-t5")
    delta = build_delta("prefix", bb, m=3, hidden=8)
    theta = delta.init(5)
    batch = toy_batch(bb)
    model = bb.model
    decoder_ids = torch.tensor([[0, 5, 7, 9]])
    ids, mask = batch["input_ids"][:1], batch["attention_mask"][:1]
    with torch.no_grad(), delta.bound(theta):
        ours = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, use_cache=False).logits
        stack = model.deltaspace_prefix_decoder
        kv = stack.key_values()  # (layers, 2, m, d)
        encoder_out = model.encoder(input_ids=ids, attention_mask=mask)
    heads = bb.config.num_heads
    self_cache = DynamicCache()
    for layer in range(kv.shape[0]):
        k, v = (kv[layer, i].view(3, heads, -1).transpose(0, 1).unsqueeze(0) for i in (0, 1))
        self_cache.update(k, v, layer)
    cache = EncoderDecoderCache(self_cache, DynamicCache())
    plain = load_backbone("tiny-t5")  # same seed: same weights, no prefix hooks
    with torch.no_grad():
        theirs = plain.model(encoder_outputs=encoder_out, attention_mask=mask, decoder_input_ids=decoder_ids,
                             past_key_values=cache, decoder_attention_mask=torch.ones(1, 7, dtype=torch.long)).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("backbone", ["tiny-t5", "tiny-bart"])
def test_prefix_decoding_with_and_without_kv_cache_agree(backbone):
    bb = load_backbone(backbone)
    delta = build_delta("prefix", bb, m=4, hidden=8)
    delta.load(delta.init(2))
    batch = toy_batch(bb)
    kw = dict(max_new_tokens=6, do_sample=False, num_beams=1)
    with torch.no_grad():
        cached = bb.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   use_cache=True, **kw)
        uncached = bb.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False, **kw)
    assert torch.equal(cached, uncached)


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(UnknownMethodError, match="Valid methods: adapter, prefix, lora"):
        build_delta("lorra", load_backbone("tiny-t5"))
    with pytest.raises(UnknownBackboneError, match="t5-base"):
        load_backbone("t5-bsae")
    with pytest.raises(DeltaOptionError, match=r"valid options: r=10, alpha=16"):
        delta_size("lora", "t5-base", rank=4)
    with pytest.raises(DeltaOptionError, match="not a valid int"):
        delta_size("lora", "t5-base", r="ten")


def test_views_of_theta_come_from_one_split():
    """Every tensor's view hangs off one split of θ: its backward concatenates the gradients once,
    where a slice per tensor would build a θ-sized zero gradient per tensor (fine-tuning: ~200 of
    them, a backward ~10x slower than the forward)."""
    bb = load_backbone("tiny-bert")
    delta = build_delta("finetune", bb)
    theta = delta.init(0).requires_grad_(True)
    parents = {id(view.grad_fn.next_functions[0][0]) for _, view in delta.views(theta)}
    assert len(parents) == 1 and len(delta.manifest) > 10
    sum(view.sum() * (i + 1) for i, (_, view) in enumerate(delta.views(theta))).backward()
    for i, (slot, _) in enumerate(delta.views(theta)):  # each slice of the gradient is its own tensor's
        assert torch.all(theta.grad[slot.offset:slot.offset + slot.numel] == i + 1)
