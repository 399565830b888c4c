"""Granite behind one interface (base.py: requests, results, the `Engine` protocol): `vllm` (GPU,
and vLLM's CPU build) and `transformers` (CPU fallback, reference), built by factory.py behind the
CTC stage (ctc/: the encoder and CTC head, word times, IBM's self-speculative rule); requests.py
turns blocks into requests, prompts.py renders their prompts, guards.py keeps outputs sane, and
model_source.py fetches and verifies the model (hub, folder, s3:// mirror). See docs/engines.md.

May import: records, storage, config, errors, cpu_torch.
"""
