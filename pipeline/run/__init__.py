"""`granite-batch run`, the driver's side (no Ray: ray_run/ is the backend it is handed). driver.py
lists, skips what earlier runs did, settles what comes back and writes the manifest; assemble.py
turns a recording's cut outcome and block results into its rows, all or nothing; language.py fills
the `language` column; commits.py batches settled recordings into commits. See docs/run.md.

May import: compliance, lake, ops, sources, records, config, errors.
"""
