"""The drivers of the commands that are not `run` (whose driver is run/): `plan` (audio-in over the
whole input, and what a run would cost), `transcribe` (local files through one engine, no Ray),
`demo` (the offline end-to-end run of a fresh machine) and `doctor` (what this machine lacks).
They sit on top of the stages and may use any of them.

May import: audio, compliance, engines, lake, ops, prompt, ray_run, records, run, sources, storage, testing, config, errors, cpu_torch.
"""
