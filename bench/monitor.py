"""`mlsys monitor` over a large request log, against a plain read of the same log.

    python bench/monitor.py [--records 1000000]

Needs a reproduced workspace (`dvc repro`). The serving window's rows (Oct-Dec 2013) are
scored by the service's own path (`Service.score`, dynamic) and written by its request log
writer into a temporary log; its files are copied until the log holds `--records` records.
Then, in the same run: a plain read of the log (`read_log`: Arrow IPC to pandas) and the
whole `mlsys monitor` (every check, over the whole window), best of 2 each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf
from timing import best  # bench/timing.py (this folder is on the path of a bench run)

from mlsys.config import SECTIONS, load_sections, read_params, select
from mlsys.io import read_parquet
from mlsys.serving.log import Entry, read_log
from mlsys.serving.request import request_body, request_columns

ROOT = Path(__file__).resolve().parents[1]


def write_log(cfg, folder: Path, records: int) -> int:
    """The serving window scored and logged by the service, copied up to `records` rows."""
    from mlsys.serving.app import Service
    from mlsys.serving.batch import serving_rows
    from mlsys.stages import SERVE

    serve = select(cfg, SERVE)
    serve.paths.request_log = str(folder)
    serve.inference.mode = "dynamic"
    service = Service(serve, ROOT)
    state = service.state
    rows = serving_rows(
        read_parquet(ROOT / cfg.paths.labelled, "built"), read_parquet(ROOT / cfg.paths.unlabelled, "built"),
        cfg.inference.window, cfg.split.tz,
    )  # fmt: skip
    columns = request_columns(cfg)
    bodies = [request_body(r, columns) for r in rows.to_dict("records")]
    records_in = [service.request_type(**b).model_dump(exclude_none=True) for b in bodies]
    task = state.served.model.task
    for i in range(0, len(records_in), 1000):
        chunk = records_in[i : i + 1000]
        results = service.score(state, chunk)
        features = [res.pop("_features", None) for res in results]  # as the server hands them over
        version, online = state.served.version, state.online.stamp.get("version")
        service.log.put(Entry(time.time(), 1.0, version, online, task, chunk, results, features))
    service.log.close(timeout=300)
    files = sorted(folder.rglob("*.arrows"))
    copies, n = 0, len(rows)
    while n * (copies + 1) < records:
        copies += 1
        for f in files:
            shutil.copyfile(f, f.with_name(f"copy{copies}-{f.name}"))
    return n * (copies + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    from mlsys import monitoring
    from mlsys.stages import STAGES

    cfg = load_sections(read_params(ROOT), tuple(SECTIONS), "params.yaml")
    work = Path(tempfile.mkdtemp(prefix="mlsys-monbench-"))
    try:
        n = write_log(cfg, work / "log", args.records)
        mon = select(cfg, STAGES["monitor"].params)
        mon.paths.request_log = str(work / "log")
        for key in ("alerts", "monitor_metrics", "monitor_report"):
            mon.paths[key] = str(work / Path(mon.paths[key]).name)
        OmegaConf.update(mon, "monitoring.since", cfg.inference.window.start)
        OmegaConf.update(mon, "monitoring.until", cfg.inference.window.end)
        read = best(lambda: read_log(work / "log"), 2)
        whole = best(lambda: monitoring.run(mon, ROOT), 2)
        print(
            f"\n{n:,} logged records: plain read {read:.1f}s, mlsys monitor {whole:.1f}s ({whole / read:.1f}x the read)"
        )
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
