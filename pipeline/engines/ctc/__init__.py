"""The CTC stage in one place: Granite's encoder and CTC head run in torch (head.py), IBM's
self-speculative rule in front of an engine (speculative.py: `CtcStage`), and word times by forced
alignment of each block's final text to its CTC frames (align.py).

May import: engines.base, records, config, errors, cpu_torch.
"""
