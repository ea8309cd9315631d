"""Test-suite settings: single-threaded torch (the tensors here are small, and on a 2-core CI
machine intra-op threads only contend with each other), and a hypothesis profile without
deadlines (timing is measured in benchmarks/, never asserted in tests)."""
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("samplerlab", deadline=None, print_blob=True)
settings.load_profile("samplerlab")
