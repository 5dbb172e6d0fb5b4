"""The delta methods' names, importable without torch.

The workflow plans thousands of jobs at parse time and must not import torch to check a method
name, so the names live here; :mod:`deltaspace.deltas.registry` maps them to classes and a test
keeps the two in step. A composite joins names with "+" (prompt+bitfit+adapter: survey §5.2).
"""

METHOD_NAMES = ("adapter", "prefix", "lora", "prompt", "bitfit", "finetune", "lora-mpco", "lora-mpcd",
                "lora-mpcn", "parallel-adapter", "trilora", "flora", "adalora", "dora", "ssl", "ssb", "ia3",
                "sam-parser", "last-layer", "selective", "classifier")

#: Methods whose θ is backbone weights (deltaspace.deltas.finetune.BackboneWeights): their runs cannot
#: share one backbone, so a fused stage-0 job never takes them (deltaspace.train.fused).
BACKBONE_WEIGHT_METHODS = ("finetune", "last-layer", "selective")
