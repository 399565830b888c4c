"""Kubernetes: the Helm chart's generated values schema and pool defaults (values_schema.py),
`granite-batch submit` and `granite-batch status` (submit.py). See docs/kubernetes.md.

May import: config, errors.
"""
