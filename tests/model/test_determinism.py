"""Two trainings in two separate processes give a byte-identical model file."""

from __future__ import annotations

from tests.conftest import run


def test_training_is_byte_identical_across_processes(sample_copy):
    p = sample_copy
    run(["mlsys", "train", "paths.model=models/a"], p)
    run(["mlsys", "train", "paths.model=models/b"], p)
    a = (p / "models/a/model.txt").read_bytes()
    b = (p / "models/b/model.txt").read_bytes()
    assert a == b
    assert a == (p / "models/model/model.txt").read_bytes()  # and equal to the DVC stage's model
    run(["mlsys", "train", "paths.model=models/c", "training.seed=7"], p)
    assert (p / "models/c/model.txt").read_bytes() != a  # the seed matters: the test can fail
