"""Extension by `_target_`: a transform and a check from a test module, declared in YAML
only, go through the same door as the built-ins (nothing in mlsys/ knows them)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from mlsys import config
from mlsys.contracts import validate_table
from mlsys.errors import ConfigError
from mlsys.features import FeaturePipeline, fit_pipeline
from tests.conftest import REPO

TRANSFORM = "features.columns.distance.transform=tests.unit.extensions.log_miles"
CHECK = (
    "contract.tables.flights.columns.distance.checks=[{_target_: tests.unit.extensions.not_a_multiple_of, step: 1000}]"
)


def _config(*overrides: str):
    text = config.compose_yaml(REPO, list(overrides))
    full = config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test")
    config.check(full, lightgbm=False)
    return full


def test_a_custom_transform_is_one_function_named_in_yaml(built):
    cfg = _config(TRANSFORM)
    rows = built.labelled.head(2000)
    pipeline = fit_pipeline(cfg.features, rows)
    j = pipeline.names.index("distance")
    frame = pipeline.transform_frame(rows)[:, j]
    assert np.allclose(frame, np.log1p(rows["distance"].to_numpy(float)))
    again = FeaturePipeline.from_state(pipeline.state())  # as the server loads it, from the saved state
    by_record = [again.transform_record(r)[0, j] for r in rows.head(200).to_dict("records")]
    assert by_record == list(frame[:200])  # the online path is the same function


def test_a_custom_check_is_one_function_named_in_yaml(parsed_tables):
    cfg = _config(CHECK)
    flights = parsed_tables["flights"].head(5000).copy()
    flights.loc[flights.index[:7], "distance"] = 2000
    result = validate_table("flights", cfg.contract.tables.flights, flights)
    failing = [f for f in result.report["row_failures"] if f["check"].startswith("not_a_multiple_of")]
    assert failing and failing[0]["rows"] >= 7 and failing[0]["column"] == "distance"
    assert failing[0]["check"] == "not_a_multiple_of(step=1000)"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (TRANSFORM.replace("log_miles", "nope"), r"features\.columns\.distance\.transform: .*cannot be imported"),
        (
            CHECK.replace("not_a_multiple_of", "nope"),
            r"contract\.tables\.flights\.columns\.distance\.checks\[0\]\._target_",
        ),
    ],
)
def test_a_reference_that_does_not_import_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        _config(override)
