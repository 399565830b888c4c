"""What operators see of a run: its live progress and closing summary (progress.py), the metrics
it pushes to a Pushgateway (metrics.py), and its id and manifest, secrets redacted (runinfo.py).
See docs/operations.md.

May import: sources.scope, records, config, errors.
"""
