"""Compliance (docs/compliance.md): term hits with their seconds, and PII found, redacted in
segments and listed in `pii/` without its value. `scan.py` is the pure core; `rules.py` loads what
to look for; `normalize.py` turns spoken numbers and addresses into written ones; `pii.py` wraps
presidio; `audio.py` writes redacted audio copies; `apply.py` is the step a run takes on each
settled recording, and `rescan.py` is `granite-batch scan`.

May import: lake, sources, storage, ops, records, config, errors.
"""

from .rules import Rules, load_rules
from .scan import Scanner, ScanResult

__all__ = ["Rules", "ScanResult", "Scanner", "load_rules"]
