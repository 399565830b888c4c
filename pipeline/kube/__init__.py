"""Kubernetes: the Helm chart's values schema, `granite-batch submit` and `granite-batch status`."""
