"""Training throughput: our loop vs peft + transformers.Trainer, and vs the frozen backbone's floor.

All three run in one process on the same backbone, method (LoRA on Q and V), batch, sequence
length and label-head loss, so the printed ratios are comparable even where absolute timings
are noisy:

- ours / Trainer: training tokens per second of deltaspace's loop (θ bound into the backbone)
  over a peft-wrapped model driven by ``transformers.Trainer`` (target: >= 1);
- ours / floor: our step time over the bare forward+backward of the frozen backbone with no
  delta at all (gradient only to the input embeddings; target: <= 1.3).

Usage: python benchmarks/train_throughput.py [--backbone minilm] [--steps 30] [--batch 16] [--length 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_batches(tokenizer, batch: int, length: int, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vocab = tokenizer.vocab_size
    for _ in range(steps):
        ids = torch.randint(1000, vocab - 1, (batch, length), generator=g)
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "label": torch.randint(0, 3, (batch,), generator=g)}


def label_head_loss(model, batch, label_ids, inputs_embeds=None):
    """The parameter-free label head of deltaspace.heads, written out for a plain model."""
    def embed(**kw):
        h = model(**kw).last_hidden_state
        m = kw["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    inputs = {"attention_mask": batch["attention_mask"]}
    inputs.update({"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch["input_ids"]})
    logits = embed(**inputs) @ embed(**label_ids).T / 0.05
    return torch.nn.functional.cross_entropy(logits, batch["label"])


def timed(fn, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)

    from deltaspace.backbones import load_backbone
    from deltaspace.deltas import build_delta
    from deltaspace.heads import make_head

    verbalizers = ["negative", "neutral", "positive"]
    bb = load_backbone(args.backbone)
    label_ids = dict(bb.tokenizer(verbalizers, padding=True, return_tensors="pt"))
    label_ids.pop("token_type_ids", None)
    batches = list(make_batches(bb.tokenizer, args.batch, args.length, args.steps + 3))
    tokens = args.batch * args.length

    # 1. The floor: frozen backbone, no delta, gradient to the input embeddings only.
    floor_model = load_backbone(args.backbone).model.train()
    it = iter(batches * 2)

    def floor_step():
        b = next(it)
        emb = floor_model.get_input_embeddings()(b["input_ids"]).detach().requires_grad_(True)
        label_head_loss(floor_model, b, label_ids, inputs_embeds=emb).backward()
    floor = timed(floor_step, args.steps)

    # 2. Ours: LoRA as a flat θ bound into the backbone, AdamW on θ.
    delta = build_delta("lora", bb, r=8, alpha=16)
    head = make_head(bb, delta, verbalizers)
    theta = torch.nn.Parameter(delta.init(0))
    opt = torch.optim.AdamW([theta], lr=1e-3)
    bb.model.train()
    it = iter(batches * 2)

    def our_step():
        b = next(it)
        with delta.bound(theta):
            loss = head.loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ours = timed(our_step, args.steps)

    # 3. peft + transformers.Trainer on the same loss.
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    peft_model = get_peft_model(load_backbone(args.backbone).model,
                                LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0))

    class LabelHeadTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            inputs["label"] = inputs.pop("labels")  # the default collator renames label → labels
            return label_head_loss(model, inputs, label_ids)

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(batches) * args.batch

        def __getitem__(self, i):
            b = batches[i // args.batch]
            return {k: v[i % args.batch] for k, v in b.items()}

    with tempfile.TemporaryDirectory() as tmp:
        trainer = LabelHeadTrainer(model=peft_model, train_dataset=Rows(), args=TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch, max_steps=args.steps + 3, learning_rate=1e-3,
            report_to=[], save_strategy="no", logging_strategy="no", remove_unused_columns=False,
            dataloader_num_workers=0, disable_tqdm=True, use_cpu=not torch.cuda.is_available()))
        start = time.perf_counter()
        trainer.train()
        trainer_step = (time.perf_counter() - start) / (args.steps + 3)

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    print(f"backbone {args.backbone}, LoRA r=8 on Q,V, batch {args.batch} x {args.length} tokens, {device}")
    print(f"floor (frozen fwd+bwd) : {floor * 1000:8.1f} ms/step  {tokens / floor:9.0f} tokens/s")
    print(f"ours                   : {ours * 1000:8.1f} ms/step  {tokens / ours:9.0f} tokens/s")
    print(f"peft + Trainer         : {trainer_step * 1000:8.1f} ms/step  {tokens / trainer_step:9.0f} tokens/s")
    print(f"ratio ours/Trainer throughput: {trainer_step / ours:.2f}  (target >= 1)")
    print(f"ratio ours/floor step time   : {ours / floor:.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
