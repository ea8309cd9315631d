"""Test-suite settings: single-threaded torch (the tensors here are small, and on a 2-core CI
machine intra-op threads only contend with each other), and a hypothesis profile without
deadlines (timing is measured in benchmarks/, never asserted in tests). Under CI (``CI`` set in
the environment) hypothesis is derandomized, so a CI verdict is reproducible; local runs keep
exploring new examples and report what they find (with the blob to replay it)."""
import os

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("samplerlab", deadline=None, print_blob=True,
                          derandomize=bool(os.environ.get("CI")))
settings.load_profile("samplerlab")


@pytest.fixture(scope="module")
def study(request):
    """The study named by the test module's ``STUDY_NAME``."""
    from samplerlab.experiments.studies import STUDIES, load_studies
    load_studies()
    return STUDIES[request.module.STUDY_NAME]


@pytest.fixture(scope="module")
def first_run(study, tmp_path_factory):
    """``(out, result)`` of one quick run of the module's study (seed 0)."""
    from samplerlab.experiments.studies.base import Context
    out = tmp_path_factory.mktemp(study.name.replace("-", "_"))
    return out, study.run(Context(out=out, quick=True, seed=0))
