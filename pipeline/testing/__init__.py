"""What tests and benchmarks build: the offline random-weight Granite Speech model
(`granite-batch make-test-model`), with the real architecture and token ids, for machines
without the hub.

May import: cpu_torch.
"""
