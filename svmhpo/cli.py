"""The ``svmhpo`` command line: parse arguments, call the library, map errors to exit codes.

Every command is a thin call into the library; :func:`main` takes ``argv`` so tests run it
in-process. User errors (:class:`~svmhpo.errors.SvmhpoError`) become one line on stderr and exit
code :data:`EXIT_USER_ERROR`; this is the only place where exceptions become exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from svmhpo.errors import SvmhpoError
from svmhpo.params import OPTIMIZERS, STRATEGIES

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USER_ERROR", "main"]

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _cmd_train(args: argparse.Namespace) -> int:
    from svmhpo.data import prepare_data
    from svmhpo.training import SVMParams, fit, held_out_metrics

    data = prepare_data(args.data, seed=args.seed, scaling=args.scaling)
    params = SVMParams(
        lr=args.lr,
        weight_decay=args.weight_decay,
        squared=args.squared,
        strategy=args.strategy,
        optimizer=args.optimizer,
    )
    module, trainer = fit(params, data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    result = {
        "data": data.name,
        "params": params.as_dict(),
        "val_acc": float(trainer.callback_metrics["val_acc"]),
        "test": held_out_metrics(module, data.x_test, data.y_test),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{data.name}: val_acc {result['val_acc']:.4f}, test_acc {result['test']['acc']:.4f}, "
            f"test_f1 {result['test']['f1']:.4f}  ({', '.join(f'{k}={v}' for k, v in params.as_dict().items())})"
        )
    return EXIT_OK


def _config(args: argparse.Namespace):
    from pathlib import Path

    from svmhpo.config import default_config_path, load_config

    path = args.config
    if path is not None and not Path(path).suffix and not Path(path).exists():
        path = default_config_path().parent / f"{path}.toml"  # a bundled study by name: --config mnist
    config = load_config(path)
    return config.replace(name=args.study_name, trials=getattr(args, "trials", None))


def _print_summary(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    t = result["trials"]
    print(
        f"study {result['study']}: {t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed "
        f"(budget {result['budget']})"
    )
    best = result["best"]
    if best is None:
        print("no trial completed yet")
        return
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    print(f"best trial {best['trial']}: val_acc {best['val_acc']:.4f}  ({params})")
    final, base = result.get("final"), result.get("baseline")
    if final:
        print(
            f"test (refit on train+val): acc {final['test_acc']:.4f}, macro F1 {final['test_f1']:.4f}; "
            f"model {final['model_path']}"
        )
    else:
        print("test: not scored yet (the study's budget is not spent)")
    if base:
        print(
            f"baseline {base['model']} C={base['C']}: test acc {base['test_acc']:.4f}, macro F1 {base['test_f1']:.4f}"
        )


def _progress(budget: int, quiet: bool):
    from svmhpo.progress import StudyProgress

    return StudyProgress(budget, enabled=False if quiet else None)


def _cmd_run(args: argparse.Namespace) -> int:
    from svmhpo.service import run_study

    config = _config(args)
    progress = _progress(config.trials, args.quiet)
    try:
        result = run_study(
            config,
            args.storage,
            jobs=args.jobs,
            timeout=args.timeout,
            warm=not args.no_warm_start,
            on_progress=progress,
        )
    finally:
        progress.close()
    _print_summary(result, args.json)
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from svmhpo.service import init_study

    config = _config(args)
    study = init_study(config, args.storage, warm=not args.no_warm_start)
    print(f"study {study.study_name}: ready (budget {config.trials})")
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    from svmhpo.service import run_worker

    result = run_worker(args.study_name, args.storage, worker_index=args.worker_index, timeout=args.timeout)
    if not args.quiet:
        _print_summary(result, as_json=False)
    return EXIT_OK


def _cmd_studies(args: argparse.Namespace) -> int:
    from svmhpo.catalog import list_studies

    rows = list_studies(args.storage)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no studies")
    for r in rows:
        best = "-" if r["best_val_acc"] is None else f"{r['best_val_acc']:.4f}"
        test = "-" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
        print(
            f"{r['study']}: {r['complete']} complete, {r['pruned']} pruned, {r['failed']} failed, "
            f"budget {r['budget']}, best val_acc {best}, test acc {test}"
        )
    return EXIT_OK


def _cmd_best(args: argparse.Namespace) -> int:
    from svmhpo.catalog import best_summary

    _print_summary(best_summary(args.study_name, args.storage), args.json)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from svmhpo.catalog import write_study_report

    print(write_study_report(args.study_name, args.storage, args.out))
    return EXIT_OK


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from svmhpo.dashboard import serve

    serve(args.storage, host=args.host, port=args.port)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svmhpo", description="Hyperparameter search for linear SVMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one SVM and print validation and test metrics")
    train.add_argument("--data", default="digits", help="digits, mnist, fashion-mnist, synthetic[:NxDxK] or a file")
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--squared", action="store_true", help="squared hinge loss")
    train.add_argument("--strategy", choices=STRATEGIES, default="crammer_singer")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--scaling", choices=("standard", "minmax", "none"), default="standard")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(handler=_cmd_train)

    storage_help = "SQLAlchemy URL of the study storage (default: $SVMHPO_STORAGE, else a SQLite file; see README)"
    for name, handler, text in (
        ("run", _cmd_run, "create or continue a study and run it until its trial budget is met"),
        ("init", _cmd_init, "create a study and record its warm start, running no trials"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="study config (TOML), or the name of one in studies/ (default: digits)")
        p.add_argument("--trials", type=int, help="total budget of finished trials (complete + pruned)")
        p.add_argument("--storage", help=storage_help)
        p.add_argument("--study-name", help="study name (default: the config's)")
        p.add_argument("--no-warm-start", action="store_true", help="skip the LR-finder warm start")
        if name == "run":
            p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
            p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
            p.add_argument("--json", action="store_true", help="print the result as JSON")
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(handler=handler)

    worker = sub.add_parser("worker", help="join an existing study and run trials until its budget is met")
    worker.add_argument("--study-name", required=True)
    worker.add_argument("--storage", help=storage_help)
    worker.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    worker.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--quiet", action="store_true", help="print nothing when done")
    worker.set_defaults(handler=_cmd_worker)

    studies = sub.add_parser("studies", help="list the studies in a storage")
    studies.add_argument("--storage", help=storage_help)
    studies.add_argument("--json", action="store_true")
    studies.set_defaults(handler=_cmd_studies)

    best = sub.add_parser("best", help="the best trial, its test result and the LinearSVC baseline")
    best.add_argument("--study-name", default="digits")
    best.add_argument("--storage", help=storage_help)
    best.add_argument("--json", action="store_true")
    best.set_defaults(handler=_cmd_best)

    report = sub.add_parser("report", help="write a self-contained HTML report of a study")
    report.add_argument("--study-name", default="digits")
    report.add_argument("--storage", help=storage_help)
    report.add_argument("--out", default="reports", help="output folder (default: reports/)")
    report.set_defaults(handler=_cmd_report)

    dash = sub.add_parser("dashboard", help="serve optuna-dashboard on the study storage")
    dash.add_argument("--storage", help=storage_help)
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    dash.add_argument("--port", type=int, default=8080)
    dash.set_defaults(handler=_cmd_dashboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except SvmhpoError as exc:
        print(f"svmhpo: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("svmhpo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
