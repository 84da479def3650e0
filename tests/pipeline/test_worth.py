"""The worth study in a real DVC repo (the flights sample, `dvc repro -P`): every input and
group judged, with its cost and upstream; the evaluation page shows the study's page; a change
to a group reruns the study alone."""

from __future__ import annotations

import json

import pandas as pd

from mlsys.model import load_model
from tests.conftest import ran, run


def test_the_worth_study_judges_every_input_with_its_cost(sample_project):
    p = sample_project
    inputs = load_model(p / "models/model").pipeline.names
    table = pd.read_csv(p / "reports/worth/worth.csv").set_index("feature")
    assert list(table.index) == [*inputs, "group:weather", "group:plane"]
    summary = json.loads((p / "metrics/worth.json").read_text())
    assert summary["inputs"] == len(inputs) and summary["measure"] == "auc"
    assert summary["useless"] == list(table.index[table["verdict"] == "useless"])
    # Shuffling the input the model leans on most hurts it, so it is among those retrained
    # without (whether a retrain does as well without it is noise on ~20k rows).
    top = table.loc[inputs, "gain_share"].idxmax()
    assert table.at[top, "permutation_change"] > 0.005 and table.at[top, "decided_by"] == "leave-one-out"
    assert table.at["wx_temp", "upstream"] == "weather" and table.at["wx_temp", "lookup_us_per_request"] > 0
    assert table.at["carrier", "served_from"] == "request" and table.at["carrier", "transform_ns_per_row"] > 0
    assert "<img" in (p / "reports/worth/index.html").read_text()
    assert '<iframe src="worth/index.html"' in (p / "reports/evaluation.html").read_text()


def test_a_group_change_reruns_only_the_worth_study(sample_copy):
    p = sample_copy
    features = p / "conf/features/flights.yaml"
    features.write_text(features.read_text().replace("plane: [plane_year, plane_seats", "plane: [plane_year"))
    run(["mlsys", "compose"], p)
    out = run(["dvc", "repro", "studies/dvc.yaml"], p).stdout
    assert ran(out) == {"guard", "snapshot", "worth"}, out  # no featurize, train or backtest
    table = pd.read_csv(p / "reports/worth/worth.csv").set_index("feature")
    assert table.at["group:plane", "source"] == "plane_year, plane_manufacturer"
