"""`mlsys` command line. Heavy libraries are imported inside commands, so `--help` is fast."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

from mlsys.errors import ExitCode, MlsysError, UsageError
from mlsys.stages import STAGES

EPILOG = """exit codes: 0 ok | 1 internal error | 2 usage | 3 config error | 4 stale params
(run `mlsys compose`) | 5 missing or unusable input | 6 contract violation | 7 gate failure |
8 upstream changed (on_upstream_change: fail) | 9 concurrent change (rerun) | 10 monitoring alert"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlsys",
        description="Declarative tabular ML in production: Hydra config, Pandera contracts, LightGBM, DVC stages.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("compose", help="compose conf/ into params.yaml (overrides: dvc exp run -S ...)")
    sub.add_parser("guard", help="fail if params.yaml is stale against conf/ (first DVC stage)")
    show = sub.add_parser("show", help="print the config a stage would receive")
    show.add_argument("stage", choices=sorted(STAGES))
    show.add_argument("overrides", nargs="*")
    sub.add_parser("audit", help="score the project against the ML Test Score rubric (28 tests)")
    rollback = sub.add_parser(
        "rollback",
        help="drop the canary's candidate, or make the previous (or --to) released version live again",
        description="With a candidate (release.rollout: canary) and no --to, the candidate is dropped "
        "and revoked. Otherwise the target is verified (checksums) and loaded in a child process before the "
        "live pointer moves; a corrupt target is refused (exit 5) and the live model stays.",
    )
    rollback.add_argument("--to", metavar="VERSION", help="a kept version (see `mlsys release list`)")
    rollback.add_argument("--reason", default="", help="recorded in the registry history")
    serve = sub.add_parser(
        "serve",
        help="HTTP service for the released model (FastAPI + uvicorn; inference.mode)",
        description="POST /predict, /livez, /readyz, /metrics, /model. Picks up a new release or a "
        "rollback without restart. Overrides as for stages, e.g. inference.mode=dynamic.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (each loads the model and reloads it; one request log file each)",
    )
    serve.add_argument("overrides", nargs="*")
    checks = sub.add_parser(
        "check-requests", help="Pandera on the request log's inputs, in one batch (serving contract)"
    )
    checks.add_argument("overrides", nargs="*")
    explain = sub.add_parser(
        "explain",
        help="one record through the served path: lookups, features, contributions, score",
        description="The server's own path for one record (request model, derived columns, online "
        "lookups, fitted features), with each feature's contribution (LightGBM pred_contrib); the "
        "contributions plus the bias sum to the raw score. POST /explain gives the same.",
    )
    explain.add_argument("--record", metavar="JSON", help="a request body (one record), or @file.json")
    explain.add_argument("--entity", metavar="KEY", help="an entity key of the built dataset")
    explain.add_argument("--version", help="a kept version (default: the live one)")
    explain.add_argument("--json", action="store_true", help="print the JSON /explain answers")
    explain.add_argument("overrides", nargs="*")
    replay = sub.add_parser(
        "replay", help="send the serving window's rows to a running server, in prediction-time order"
    )
    replay.add_argument("--url", default="http://127.0.0.1:8000")
    replay.add_argument("--batch", type=int, default=50, help="records per request")
    replay.add_argument("--limit", type=int, default=None, help="at most this many records (the first)")
    replay.add_argument("overrides", nargs="*")
    for name, stage in STAGES.items():
        p = sub.add_parser(
            name,
            help=stage.help,
            description=f"{stage.help}. Reads params "
            f"keys: {', '.join(stage.params)}. Without overrides the config "
            "comes from params.yaml; with overrides, from conf/ + overrides.",
        )
        if name == "release":
            p.add_argument("--promote", action="store_true", help="make the registry's candidate (canary) live")
            p.add_argument("--reason", default="", help="with --promote: recorded in the registry history")
        if name == "backtest":  # one period; dvc.yaml passes them (`foreach` over backtest.periods)
            for arg, example in (("period", "2013-05"), ("start", "2013-05-01"), ("end", "2013-06-01"), ("prev", "")):
                p.add_argument(arg, help=f"e.g. {example or '2013-04 (the period before)'}")
        p.add_argument(
            "overrides",
            nargs="*",
            help="Hydra overrides, e.g. model.params.num_leaves=15 or ~key"
            + ("; or `list`: the released versions" if name == "release" else ""),
        )
    return parser


def _run(args: argparse.Namespace) -> None:
    from mlsys import config

    if args.command == "compose":
        path = config.write_params(config.project_root())
        print(f"wrote {path}")
    elif args.command == "guard":
        from mlsys.io import write_json

        root = config.project_root()
        status = config.guard(root)
        write_json(root / _project_paths()[1].guard, {"status": "ok"})
        print(f"guard: {status}")
    elif args.command == "release" and args.promote:
        from mlsys.release import cli as release_cli

        if args.overrides:
            raise UsageError(f"`mlsys release --promote` takes no overrides (got {' '.join(args.overrides)})")
        release_cli.promote(_registry(), args.reason)
    elif args.command == "rollback" or (args.command == "release" and args.overrides[:1] == ["list"]):
        from mlsys.release import cli as release_cli

        if args.command == "release" and len(args.overrides) > 1:
            raise UsageError(f"`mlsys release list` takes no arguments (got {' '.join(args.overrides[1:])})")
        registry = _registry()
        if args.command == "rollback":
            release_cli.rollback(registry, args.to, args.reason)
        else:
            release_cli.show(registry)
    elif args.command == "audit":
        from mlsys.audit import Project, markdown, score
        from mlsys.io import atomic_write, write_json

        root, paths = _project_paths()
        result = score(Project.load(root))
        write_json(root / f"{paths.audit}.json", result)
        atomic_write(root / f"{paths.audit}.md", lambda p: p.write_text(markdown(result)))
        _print_audit(result)
        print(f"report: {paths.audit}.json, {paths.audit}.md")
    elif args.command == "serve":
        from mlsys.serving import app as serving
        from mlsys.stages import SERVE

        cfg, root = config.stage_config(SERVE, args.overrides)
        if args.workers > 1:
            _serve_workers(cfg, root, args)
            return
        import uvicorn

        app = serving.create_app(cfg, root)
        service = app.state.service
        served = service.state.served
        print(
            f"serve: {served.version if served else 'no model yet'} ({cfg.inference.mode}) "
            f"on http://{args.host}:{args.port}; request log {cfg.paths.request_log}",
            flush=True,
        )
        for problem in service.problems(service.state):  # served anyway: /readyz says 503 until fixed
            print(f"serve: not ready: {problem}", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    elif args.command == "check-requests":
        from mlsys.serving import checks as check_requests
        from mlsys.stages import SERVE

        cfg, root = config.stage_config(SERVE, args.overrides)
        check_requests.run(cfg, root)
    elif args.command == "explain":
        import json

        from mlsys.serving import explain as explainer
        from mlsys.stages import SERVE

        cfg, root = config.stage_config(SERVE, args.overrides)
        result = explainer.run(cfg, root, args.record, args.entity, args.version)
        if args.json:
            print(json.dumps(result, indent=1))
        else:
            explainer.show(result)
    elif args.command == "replay":
        from mlsys.monitoring import replay as replayer
        from mlsys.stages import REPLAY

        cfg, root = config.stage_config(REPLAY, args.overrides)
        replayer.run(cfg, root, args.url, args.batch, args.limit)
    elif args.command == "show":
        from omegaconf import OmegaConf

        cfg, _ = config.stage_config(STAGES[args.stage].params, args.overrides)
        print(OmegaConf.to_yaml(cfg), end="")
    else:
        extra = {k: getattr(args, k) for k in ("period", "start", "end", "prev") if args.command == "backtest"}
        cfg, root = config.stage_config(STAGES[args.command].params, args.overrides)
        if STAGES[args.command].on_workers:  # engine dask: the cluster starts while the stage reads
            from mlsys.cluster import prestart

            prestart(cfg.engine, STAGES[args.command].on_workers)
        if STAGES[args.command].recorded_by and not args.overrides:
            _check_record(args.command, cfg, root)
        module = importlib.import_module(f"pipelines.{args.command}")
        start = time.perf_counter()
        module.run(cfg, root, **extra)
        print(f"{args.command}: done in {time.perf_counter() - start:.1f}s", file=sys.stderr)


def _serve_workers(cfg: Any, root: Path, args: argparse.Namespace) -> None:
    """`mlsys serve --workers N`: uvicorn's worker processes on one socket, each building the
    app from the composed config (a file named in the environment); Prometheus' multiprocess
    mode in a fresh folder, so /metrics on any worker counts every worker's requests."""
    import json
    import os
    import shutil
    import tempfile

    import uvicorn
    from omegaconf import OmegaConf

    from mlsys.serving.app import SERVE_CONFIG, SERVE_ROOT

    work = Path(tempfile.mkdtemp(prefix="mlsys-serve-"))
    (work / "metrics").mkdir()
    config_file = work / "composed.json"
    config_file.write_text(json.dumps(OmegaConf.to_container(cfg, resolve=True)), encoding="utf-8")
    os.environ.update(
        {SERVE_CONFIG: str(config_file), SERVE_ROOT: str(root), "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
    )
    print(
        f"serve: {args.workers} workers ({cfg.inference.mode}) on http://{args.host}:{args.port}; "
        f"request log {cfg.paths.request_log} (a file per worker)",
        flush=True,
    )
    try:
        uvicorn.run(
            "mlsys.serving.app:from_environment", factory=True, workers=args.workers, host=args.host,
            port=args.port, log_level="warning", access_log=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _project_paths() -> tuple[Path, Any]:
    """The project root and its typed `paths` section (from params.yaml)."""
    from mlsys import config

    root = config.project_root()
    return root, config.load_sections(config.read_params(root), ("paths",), config.PARAMS_FILE).paths


def _check_record(stage: str, cfg: Any, root: Path) -> None:
    """A stage DVC tracks through a config record must read what the record says (the record
    is older than params.yaml if its recorder has not run since params.yaml changed)."""
    from mlsys.config import config_hash
    from mlsys.errors import StaleParamsError
    from mlsys.io import read_json
    from mlsys.stages import record_file

    recorder = STAGES[stage].recorded_by
    path = root / cfg.paths.periods / record_file(stage)
    recorded = read_json(path, f"the config record of {stage}: run `mlsys {recorder}`")
    if recorded.get("config_hash") != config_hash(cfg):
        raise StaleParamsError(
            f"{path} records another config than params.yaml gives {stage}: run `mlsys {recorder}` first "
            "(`dvc repro studies/dvc.yaml` does), or pass overrides to run it by hand"
        )


def _registry() -> Any:
    """The project's registry for its model (paths.registry, release.model_name)."""
    from mlsys import config
    from mlsys.release.registry import Registry, locate

    root = config.project_root()
    cfg = config.load_sections(config.read_params(root), ("paths", "release"), config.PARAMS_FILE)
    return Registry(locate(root, cfg.paths.registry)[0], cfg.release.model_name)


def _print_audit(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ML Test Score (Breck et al. 2017)")
    for col in ("test", "points", "status", "evidence / note"):
        table.add_column(col, overflow="fold")
    for r in result["tests"]:
        table.add_row(f"{r['id']} {r['test']}", str(r["points"]), r["status"], "\n".join(r["evidence"]) or r["note"])
    Console().print(table)
    sections = ", ".join(f"{s} {v}" for s, v in result["sections"].items())
    print(f"sections: {sections}; final score (lowest section): {result['final']}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except MlsysError as exc:
        print(f"mlsys {args.command}: error: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return 130
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
