"""Features: fitted on train only; the record path equals the frame path, scores too."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.features import FeaturePipeline, fit_pipeline
from mlsys.features.transforms import TRANSFORMS
from mlsys.split import select


@pytest.fixture(scope="module")
def fitted(built, full_config):
    train = select(built.labelled, EVENT_TIME, full_config.split, "train")
    test = select(built.labelled, EVENT_TIME, full_config.split, "test")
    return fit_pipeline(full_config.features, train), train, test


@pytest.fixture(scope="module")
def booster(fitted):
    pipeline, train, _ = fitted
    x = pipeline.transform_frame(train)
    ds = lgb.Dataset(x, train[LABEL].to_numpy(), feature_name=pipeline.names, categorical_feature=pipeline.categorical)
    return lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1}, ds, num_boost_round=30)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def test_record_path_equals_frame_path_on_real_rows(fitted, booster):
    pipeline, _, test = fitted
    rows = test.sample(2000, random_state=0).reset_index(drop=True)
    batch = pipeline.transform_frame(rows)
    single = np.vstack([pipeline.transform_record(r) for r in rows.to_dict("records")])
    assert _same(batch, single)
    p_batch = booster.predict(batch)
    p_single = np.array(
        [booster.predict(pipeline.transform_record(r), num_threads=1)[0] for r in rows.head(300).to_dict("records")]
    )
    assert np.max(np.abs(p_batch[:300] - p_single)) == 0.0


def test_state_round_trips_through_json(fitted):
    import json

    pipeline, _, test = fitted
    again = FeaturePipeline.from_state(json.loads(json.dumps(pipeline.state())))
    assert _same(again.transform_frame(test.head(500)), pipeline.transform_frame(test.head(500)))


def test_state_is_fitted_on_the_train_window_only(fitted):
    pipeline, train, test = fitted
    spec = {s["name"]: s for s in pipeline.specs}
    dest_vocab = set(spec["dest"]["state"]["categories"])
    counts = train["dest"].value_counts()
    assert dest_vocab == set(counts[counts >= 20].index)
    lo, hi = np.nanquantile(train["distance"].to_numpy(float), [0.001, 0.999])
    assert (spec["distance"]["state"]["lo"], spec["distance"]["state"]["hi"]) == (lo, hi)
    unseen = sorted(set(test["dest"]) - dest_vocab)
    assert unseen, "the test window should hold destinations rare or absent in training"
    codes = pipeline.transform_frame(test[test["dest"].isin(unseen)])[:, pipeline.names.index("dest")]
    assert np.isnan(codes).all()


_values = st.one_of(
    st.none(), st.just(float("nan")), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10_000, 10_000)
)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_generated_records_match_frame_path(fitted, data):
    """Unknown categories, nulls, NaN and extreme numbers: both paths agree exactly."""
    pipeline = fitted[0]
    record = {}
    for name, src, spec in zip(pipeline.names, pipeline.sources, pipeline.specs, strict=True):
        if spec["type"] == "categorical":
            known = spec["state"]["categories"][:5] or ["x"]
            record[src] = data.draw(st.one_of(st.none(), st.sampled_from(known), st.text(max_size=4)), label=name)
        elif src == "event_local":
            ts = data.draw(st.datetimes(min_value=pd.Timestamp("2012-01-01"), max_value=pd.Timestamp("2015-01-01")))
            record[src] = pd.Timestamp(ts).tz_localize("UTC").tz_convert("America/New_York")
        elif spec["transform"] == "hhmm_minutes":
            record[src] = data.draw(st.one_of(st.none(), st.integers(0, 2359)), label=name)
        else:
            record[src] = data.draw(_values, label=name)
    assert _same(pipeline.transform_record(record), pipeline.transform_frame(pd.DataFrame([record])))


def test_clip_without_finite_training_values_has_no_bounds(fitted):
    from omegaconf import OmegaConf

    from mlsys.config.schema import FeatureConfig
    from mlsys.features.transforms import Column, encoder, fit

    cfg = OmegaConf.structured(FeatureConfig(source="x", transform="clip"))
    state = fit("clip", Column(pd.Series([np.nan, np.nan])), cfg)
    enc = encoder("clip", state)
    assert enc.value(5.0) == enc.column(pd.Series([5.0]))[0] == 5.0


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_every_transform_row_path_equals_frame_path(transform):
    """Each transform, fitted on one column, gives the same number per value and per column."""
    from omegaconf import OmegaConf

    from mlsys.config.schema import FeatureConfig
    from mlsys.features.transforms import Column, encoder, fit

    rng = np.random.default_rng(0)
    if transform == "vocab":
        s = pd.Series(rng.choice(["a", "b", "c", None], 500), dtype="str")
        cfg = FeatureConfig(source="x", type="categorical", transform=transform, min_count=2)
    elif transform in ("identity", "clip", "hhmm_minutes"):
        s = pd.Series(np.where(rng.random(500) < 0.1, np.nan, rng.integers(0, 2359, 500).astype(float)))
        cfg = FeatureConfig(source="x", transform=transform, impute="median")
    else:
        t = pd.Timestamp("2013-01-01", tz="America/New_York") + pd.to_timedelta(rng.integers(0, 10**7, 500), "min")
        s = pd.Series(t)
        cfg = FeatureConfig(source="x", transform=transform)
    enc = encoder(transform, fit(transform, Column(s), OmegaConf.structured(cfg)))
    column = enc.column(s)
    single = np.array([enc.value(v) for v in s.tolist()])
    assert _same(column, single)
    assert np.isfinite(column).any()


KNOWN = {  # transform -> (training column, input, expected output), worked out by hand
    "identity": ([1.0, 2.0], [3.5, None], [3.5, np.nan]),
    "clip": (list(range(1001)), [-5.0, 500.0, 5000.0], [1.0, 500.0, 999.0]),  # quantiles 0.001 / 0.999
    "vocab": (["b", "a", "b", "c", "b", "a"], ["b", "a", "c", "zzz", None], [0.0, 1.0, 2.0, np.nan, np.nan]),
    "hhmm_minutes": ([0.0], [819.0, 0.0, 2359.0], [499.0, 0.0, 1439.0]),
    "day_of_week": ([0.0], ["2013-11-04 08:00"], [0.0]),  # a Monday
    "day_of_year": ([0.0], ["2013-03-10 08:00"], [69.0]),
    "month": ([0.0], ["2013-12-31 23:00"], [12.0]),
    "day": ([0.0], ["2013-12-31 23:00"], [31.0]),
    "hour": ([0.0], ["2013-03-10 03:30"], [3.0]),
    "minute_of_day": ([0.0], ["2013-03-10 03:30"], [210.0]),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_every_transform_gives_known_values(transform):
    """Each transform against values worked out by hand, on both paths (data-7)."""
    from mlsys.config.schema import FeatureConfig
    from mlsys.features.transforms import Column, encoder, fit

    assert set(KNOWN) == set(TRANSFORMS), "a transform without known values"
    train, given, expected = KNOWN[transform]
    calendar = transform in ("day_of_week", "day_of_year", "month", "day", "hour", "minute_of_day")
    series = pd.Series(pd.to_datetime(given)).dt.tz_localize("America/New_York") if calendar else pd.Series(given)
    cfg = FeatureConfig(transform=transform, type="categorical" if transform == "vocab" else "numeric")
    state = fit(transform, Column(pd.Series(train)), OmegaConf.structured(cfg))
    enc = encoder(transform, state)
    assert _same(enc.column(series), np.array(expected))
    assert _same(np.array([enc.value(v) for v in series.tolist()]), np.array(expected))


def _checked(*overrides: str):
    from mlsys import config
    from tests.conftest import REPO

    text = config.compose_yaml(REPO, list(overrides))
    config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"), lightgbm=False)


def test_a_feature_source_not_declared_is_an_error_at_compose_with_did_you_mean():
    from mlsys.errors import ConfigError

    with pytest.raises(ConfigError, match=r"features\.columns\.distance\.source: 'distanse' \(did you mean 'distance'"):
        _checked("features.columns.distance.source=distanse")


def test_a_feature_whose_type_does_not_fit_its_column_fails_where_it_is_first_known(built, full_config):
    from mlsys.errors import ConfigError

    # At compose: the contract declares carrier as text.
    with pytest.raises(ConfigError, match=r"features\.columns\.carrier: transform 'identity' reads numeric values"):
        _checked("features.columns.carrier.type=numeric", "features.columns.carrier.transform=identity")
    # At featurize, when only the data can tell (a text column of the built table).
    features = OmegaConf.merge(full_config.features, {"columns": {"carrier": {"type": "numeric", "transform": "clip"}}})
    with pytest.raises(
        ConfigError, match=r"features\.columns\.carrier: transform 'clip' reads numeric values, but col"
    ):
        fit_pipeline(features, built.labelled.head(100))
