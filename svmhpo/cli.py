"""The ``svmhpo`` command line: parse arguments, call the library, map errors to exit statuses.

Every command is a thin call into the library; :func:`main` takes ``argv`` so tests run it
in-process. This is the one place where exceptions become exit statuses (:class:`ExitStatus`):
a user error (:class:`~svmhpo.errors.SvmhpoError`) is one line on stderr, or its traceback with
``--debug``; anything else is a bug and keeps its traceback. The options of ``train`` and the
numeric checks of every option come from the settings' one definition in
:mod:`svmhpo.svm.params` and :mod:`svmhpo.hpo.config`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic import BaseModel

from svmhpo.errors import SvmhpoError
from svmhpo.interrupts import Terminated
from svmhpo.svm.params import METRICS, metric_key, metric_title

__all__ = ["ExitStatus", "main"]


class ExitStatus(IntEnum):
    """What ``svmhpo`` exits with."""

    OK = 0
    #: The user can fix it: a bad config, data file, storage URL or value (one line on stderr).
    USER_ERROR = 1
    #: The command line itself is wrong (argparse's usage message).
    USAGE = 2
    #: A bug in svmhpo: the traceback is printed (sysexits' EX_SOFTWARE).
    INTERNAL_ERROR = 70
    #: Ctrl-C.
    INTERRUPTED = 130


def _checked(kind: type, low: float | None, low_inclusive: bool, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type: parse ``kind`` and check it against the bounds of its definition."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and (value < low or (value == low and not low_inclusive)):
            raise argparse.ArgumentTypeError(f"must be {'>=' if low_inclusive else '>'} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _add_setting(parser: argparse.ArgumentParser, model: type[BaseModel], name: str, flag: str | None = None) -> None:
    """Add ``--name`` for setting ``name`` of ``model``: its type, default, bounds, choices and help."""
    from svmhpo.svm.params import bounds

    info = model.model_fields[name]
    flag = flag or "--" + name.replace("_", "-")
    kind = info.annotation
    if kind is bool:
        parser.add_argument(flag, action="store_true", default=info.default, help=info.description)
        return
    help_text = f"{info.description} (default: %(default)s)"
    if get_origin(kind) is Literal:
        parser.add_argument(flag, choices=get_args(kind), default=info.default, help=help_text)
    else:
        low, low_inclusive, high, _ = bounds(info)
        parser.add_argument(flag, type=_checked(kind, low, low_inclusive, high), default=info.default, help=help_text)


def _cmd_train(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.svm.params import VAL_ACC, SVMParams
    from svmhpo.svm.training import fit, held_out_metrics

    if args.from_study and not args.train_only:
        return _train_from_study(args)
    if args.from_study:
        from svmhpo.hpo.modelside import load_study_data
        from svmhpo.hpo.tuned import best_fit

        best = best_fit(args.from_study, args.storage)
        data = load_study_data(best.config, device="cpu")
        params, epochs, batch_size, seed = best.params, best.epochs, best.batch_size, best.seed
    else:
        from svmhpo.svm.data import TableFormat, prepare_data

        data = prepare_data(args.data, seed=args.seed, scaling=args.scaling, table=TableFormat(label=args.label))
        params = SVMParams(**{name: getattr(args, name) for name in SVMParams.model_fields})
        epochs, batch_size, seed = args.epochs, args.batch_size, args.seed
    module, trainer = fit(params, data, epochs=epochs, batch_size=batch_size, seed=seed)
    source = {"command": "train", "seed": seed} | ({"study": args.from_study} if args.from_study else {})
    _save_trained(args, module, params, data, source)
    result = {
        "data": data.name,
        "params": params.as_dict(),
        "val_acc": float(trainer.callback_metrics[VAL_ACC]),
        "test": held_out_metrics(module, data.x_test, data.y_test),
    }
    _emit(
        args,
        result,
        lambda: print(
            f"{data.name}: val_acc {result['val_acc']:.4f}, test_acc {result['test']['acc']:.4f}, "
            f"test_f1 {result['test']['f1']:.4f}  ({_params_line(params.as_dict())})"
        ),
    )
    return ExitStatus.OK


def _fmt(args: argparse.Namespace) -> str:
    """The output format a command was asked for: ``-f``, or ``json`` for ``--json``."""
    return "json" if getattr(args, "json", False) else getattr(args, "format", "table")


def _emit(args: argparse.Namespace, result: Any, table: Callable[[], None]) -> None:
    """Print a command's result: ``table`` prints its own text, the other formats are rendered."""
    fmt = _fmt(args)
    if fmt == "table":
        table()
        return
    from svmhpo.view.tables import render_result

    sys.stdout.write(render_result(result, fmt))


def _params_line(params: dict) -> str:
    from svmhpo.view.tables import params_text

    return params_text(params)


def _save_trained(args: argparse.Namespace, module, params, data, source: dict) -> None:
    if not args.save:
        return
    from svmhpo.svm.persist import save_fit

    print(f"model saved to {save_fit(args.save, module, params, data, source)}", file=sys.stderr)


def _train_from_study(args: argparse.Namespace) -> ExitStatus:
    """The study's final refit, done again: train+validation, same seed and split, scored on test."""
    from svmhpo.hpo.service import reproduce_refit
    from svmhpo.svm.params import SVMParams

    result, module, data = reproduce_refit(args.from_study, args.storage)
    params = result["params"]
    decoded = SVMParams(**{k: v for k, v in params.items() if k in SVMParams.model_fields})
    source = {"command": "train", "study": args.from_study, "trial": result["trial"], "test_acc": result["test_acc"]}
    _save_trained(args, module, decoded, data, source)

    def table() -> None:
        metric = result.get("metric", "accuracy")
        print(
            f"{data.name}: trial {result['trial']} refit on train+val: test {_test_scores(result, metric)}  "
            f"({_params_line(params)})"
        )
        if result["baseline"]:
            _print_baseline(result["baseline"], result, metric)

    _emit(args, result, table)
    return ExitStatus.OK


def _cmd_predict(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo.tuned import load_model, load_study_model, predict_file

    # --study-name is always a study and --model always a path: a folder named like the study is never taken
    model = load_model(path=args.model) if args.model else load_study_model(args.study_name, args.storage)
    print(predict_file(model, args.data, args.out), file=sys.stderr if args.out is None else sys.stdout)
    return ExitStatus.OK


def _cmd_export(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo.tuned import export_model

    out = export_model(args.study_name, args.out, args.storage, force=args.force)
    zipped = out.suffix.lower() == ".zip"

    def table() -> None:
        what = "a zip" if zipped else "a folder (model.json, weights.pt)"
        print(
            f"wrote the model of study {args.study_name!r} as {what}; predict --model and load_model take:",
            file=sys.stderr,
        )
        print(out)

    _emit(args, {"study": args.study_name, "model": str(out), "as": "zip" if zipped else "folder"}, table)
    return ExitStatus.OK


def _cmd_refit(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo.service import refit_study

    result = refit_study(args.study_name, args.storage, on_event=lambda line: print(line, file=sys.stderr))
    _emit(args, result, lambda: _print_summary(result))
    return ExitStatus.OK


def _config(args: argparse.Namespace):
    from svmhpo.hpo.studies import run_config

    return run_config(
        args.config,
        args.study_name,
        args.storage,
        trials=getattr(args, "trials", None),
        batch_trials=getattr(args, "batch_trials", None),
        cv=getattr(args, "cv", None),
        metric=getattr(args, "metric", None),
    )


def _print_summary(result: dict) -> None:
    """A study's summary (:func:`~svmhpo.hpo.studies.summary`) as the text of ``best`` and ``run``."""
    t = result["trials"]
    running = f", {t['running']} running" if t.get("running") else ""
    print(
        f"study {result['study']}: {t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed{running} "
        f"(budget {result['budget']})"
    )
    best = result["best"]
    if best is None:
        print("no trial completed yet" + (f" ({t['running']} running)" if t.get("running") else ""))
        return
    from svmhpo.view.tables import params_text

    folds = ""
    if best.get("cv_scores"):
        k = len(best["cv_scores"])
        folds = f" (mean of {k} folds, std {best['cv_std']:.4f})"
    metric = result.get("metric", "accuracy")
    key = metric_key(metric)
    print(f"best trial {best['trial']}: {key} {best[key]:.4f}{folds}  ({params_text(best['params'])})")
    final, base = result.get("final"), result.get("baseline")
    if final:
        print(f"test (refit on train+val): {_test_scores(final, metric)}")
        if final.get("model") == "missing":
            print(f"model: missing (deleted from the study, or on another host's disk); rebuild it: {final['refit']}")
        elif final.get("model_path"):
            print(f"model: {final['model_path']}")
        else:
            artifact = final["model_artifact_id"]
            print(f"model: in the study's database (artifact {artifact}); any host with the URL reads it")
    elif t["complete"] + t["pruned"] < (result["budget"] or 0):
        print("test: not scored yet (the study's budget is not spent)")
    else:
        print("test: not scored yet: the budget is spent but no refit is stored (run the same command again to refit)")
    if base:
        _print_baseline(base, final, metric)


def _test_scores(result: dict, metric: str) -> str:
    """``acc 0.9611, macro F1 0.9603``, the study's metric first when it is another."""
    scores = f"acc {result['test_acc']:.4f}, macro F1 {result['test_f1']:.4f}"
    score = result.get(metric_key(metric, "test"))
    if metric == "balanced_accuracy" and score is not None:
        return f"balanced acc {score:.4f}, " + scores
    return scores


def _print_baseline(base: dict, final: dict | None, metric: str = "accuracy") -> None:
    """The LinearSVC baseline's test result, and which of the two won on the study's metric, in a word."""
    line = f"baseline {base['model']} C={base['C']}: test {_test_scores(base, metric)}"
    if base.get("not_converged"):
        values = ", ".join(f"{c:g}" for c in base["not_converged"])
        line += f" (liblinear stopped before it converged at C = {values})"
    if final:
        test, title = metric_key(metric, "test"), metric_title(metric)
        if test not in final or test not in base:  # a refit or baseline stored before [study] metric
            test, title = "test_acc", "accuracy"
        gap = final[test] - base[test]
        if abs(gap) < 1e-12:
            line += f"; a TIE with the tuned model on test {title}"
        elif gap > 0:
            line += f"; the tuned model WINS by {100 * gap:.2f} points of {title}"
        else:
            line += (
                f"; the BASELINE WINS by {-100 * gap:.2f} points of {title}: the tuned SVM is worse than LinearSVC here"
            )
    print(line)


def _cmd_run(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo.service import run_study
    from svmhpo.view.progress import StudyProgress

    config = _config(args)
    progress = StudyProgress(
        config.trials, mode="off" if args.quiet else None, verbose=args.verbose, metric=config.metric
    )
    try:
        result = run_study(
            config,
            args.storage,
            jobs=args.jobs,
            timeout=args.timeout,
            warm=not args.no_warm_start,
            on_progress=progress,
            on_event=progress.phase,
            on_trial=progress.trial,
        )
    finally:
        progress.close()
    _emit(args, result, lambda: _print_summary(result))
    return ExitStatus.OK


def _cmd_init(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo import records
    from svmhpo.hpo.service import init_study

    config = _config(args)
    study = init_study(
        config, args.storage, warm=not args.no_warm_start, on_event=lambda line: print(line, file=sys.stderr)
    )
    result = {"study": study.study_name, "budget": config.trials, "warm_start": records.warm_start(study) or {}}
    _emit(args, result, lambda: print(f"study {study.study_name}: ready (budget {config.trials})"))
    return ExitStatus.OK


def _cmd_worker(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo.service import run_worker
    from svmhpo.view.catalog import best_summary
    from svmhpo.view.progress import StudyProgress

    shown = {"budget": 0, "metric": "accuracy"} if args.quiet else best_summary(args.study_name, args.storage)
    progress = StudyProgress(
        shown["budget"], mode="off" if args.quiet else None, verbose=args.verbose, metric=shown["metric"]
    )
    try:
        result = run_worker(
            args.study_name,
            args.storage,
            timeout=args.timeout,
            gpus=args.gpus,
            batch_trials=args.batch_trials,
            on_progress=progress,
            on_event=progress.phase,
            on_trial=progress.trial,
        )
    finally:
        progress.close()
    _emit(args, result, lambda: _print_summary(result))  # the result, as `run --quiet` prints it
    return ExitStatus.OK


def _cmd_studies(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.view.catalog import list_studies
    from svmhpo.view.tables import render

    sys.stdout.write(render(list_studies(args.storage), _fmt(args)))
    return ExitStatus.OK


def _cmd_trials(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.view.catalog import list_trials
    from svmhpo.view.tables import render

    sys.stdout.write(render(list_trials(args.study_name, args.storage), _fmt(args)))
    return ExitStatus.OK


def _cmd_delete(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.hpo.studies import delete_study

    if not args.yes:
        if not sys.stdin.isatty():
            raise SvmhpoError(f"deleting study {args.study_name!r} needs --yes when not asked at a terminal")
        answer = input(f"delete study {args.study_name!r}, its trials and its saved models? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _emit(args, {"study": args.study_name, "deleted": False}, lambda: print("nothing deleted"))
            return ExitStatus.OK
    removed = delete_study(args.study_name, args.storage)
    text = f"deleted study {args.study_name!r}" + (" and its model" if removed else "")
    _emit(args, {"study": args.study_name, "deleted": True, "model": bool(removed)}, lambda: print(text))
    return ExitStatus.OK


def _cmd_best(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.view.catalog import best_summary

    result = best_summary(args.study_name, args.storage)
    _emit(args, result, lambda: _print_summary(result))
    return ExitStatus.OK


def _cmd_report(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.view.catalog import write_study_report

    path = write_study_report(args.study_name, args.storage, args.out, plotlyjs=args.plotlyjs, force=args.force)
    size = os.path.getsize(path)

    def table() -> None:
        offline = "opens offline" if args.plotlyjs == "embed" else "loads plotly.js from its CDN"
        print(f"wrote the report of study {args.study_name!r} ({size / 2**20:.1f} MB, {offline}):", file=sys.stderr)
        print(path)

    _emit(args, {"study": args.study_name, "report": path, "bytes": size, "plotlyjs": args.plotlyjs}, table)
    return ExitStatus.OK


def _cmd_dashboard(args: argparse.Namespace) -> ExitStatus:
    from svmhpo.view.dashboard import serve

    serve(args.storage, host=args.host, port=args.port)
    return ExitStatus.OK


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (naming the option and pointing at ``--help``, with
    the closest option for a mistyped one)."""

    #: The arguments being parsed (``None``: ``sys.argv``), for the suggestion.
    argv: list[str] | None = None

    def error(self, message: str):  # type: ignore[override]
        if message.startswith("unrecognized arguments: "):
            message += self._did_you_mean(message.removeprefix("unrecognized arguments: ").split())
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _did_you_mean(self, unknown: list[str]) -> str:
        """``"; did you mean --trials?"`` for the first unknown option close to one this command takes."""
        import difflib

        argv = sys.argv[1:] if self.argv is None else self.argv
        command = next((a for a in argv if not a.startswith("-")), None)
        parsers = [self]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                parsers.append(action.choices[command])
        known = [o for p in parsers for a in p._actions for o in a.option_strings if o.startswith("--")]
        for word in unknown:
            if word.startswith("--"):
                close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""


#: A few lines of use under each command's --help (clig.dev: lead with examples).
EXAMPLES: dict[str, list[str]] = {
    "run": [
        "svmhpo run --trials 200                      # the digits study, in ~/.local/share/svmhpo/",
        "svmhpo run --config mnist --jobs 2           # MNIST from OpenML, two worker processes",
        "svmhpo run --config my.toml --storage postgresql+psycopg://user:pw@db/svmhpo",
    ],
    "worker": [
        "svmhpo worker --study-name digits --storage postgresql+psycopg://user:pw@db/svmhpo",
        "svmhpo worker --study-name mnist --gpus all --batch-trials 128",
    ],
    "init": ["svmhpo init --config mnist --storage postgresql+psycopg://user:pw@db/svmhpo"],
    "studies": ["svmhpo studies", "svmhpo studies -f json | jq '.[].best'"],
    "trials": ["svmhpo trials", "svmhpo trials --study-name mnist -f csv > trials.csv"],
    "best": ["svmhpo best", "svmhpo best --study-name mnist -f json"],
    "predict": ["svmhpo predict --study-name digits new.csv --out labels.csv"],
    "export": ["svmhpo export --study-name digits --out model.zip"],
    "refit": ["svmhpo refit --study-name digits          # rebuild a model deleted from the study"],
    "delete": ["svmhpo delete --study-name old-study", "svmhpo delete --study-name old-study --yes -f json"],
    "report": [
        "svmhpo report                                # reports/digits.html",
        "svmhpo report --out r.html --plotlyjs cdn",
    ],
    "dashboard": ["svmhpo dashboard                             # http://127.0.0.1:8080/"],
    "train": ["svmhpo train --lr 0.1 --optimizer asgd --save model/", "svmhpo train --from-study digits"],
}

QUIET_HELP = "no progress output: errors and the final result only"
STORAGE_HELP = "SQLAlchemy URL of the study storage (default: $SVMHPO_STORAGE, else a SQLite file; see README)"
POSITIVE_INT = _checked(int, 1, True)
POSITIVE_FLOAT = _checked(float, 0, False)


def _format_options(parser: argparse.ArgumentParser) -> None:
    """``-f table|json|csv|yaml`` and its ``--json`` alias, the same on every command that prints a result."""
    from svmhpo.view.tables import FORMATS

    parser.add_argument(
        "-f", "--format", choices=FORMATS, default="table", help="output format of the result (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="the same as -f json")


def _output_options(parser: argparse.ArgumentParser, quiet_help: str) -> None:
    """``--quiet`` and ``-v``, which exclude each other."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help=quiet_help)
    verbose_help = "also one line per finished trial: state, value, parameters, worker"
    group.add_argument("-v", "--verbose", action="store_true", help=verbose_help)


def _parser() -> argparse.ArgumentParser:
    from svmhpo import __version__
    from svmhpo.hpo.config import StudyConfig, TrainingConfig
    from svmhpo.svm.params import DEFAULT_SCALING, MAX_SEED, SCALINGS, FitSettings, SVMParams

    debug_help = "show the traceback of an error"
    batch_help = (
        f"{TrainingConfig.field('batch_trials').description} "
        f"(default: the config's [training] batch_trials, {TrainingConfig().batch_trials})"
    )
    parser = _Parser(prog="svmhpo", description="Hyperparameter search for linear SVMs.")
    parser.add_argument("--debug", action="store_true", help=debug_help)
    parser.add_argument("--version", action="version", version=f"svmhpo {__version__}")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command too, not resetting it
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, handler: Callable[[argparse.Namespace], ExitStatus], text: str) -> argparse.ArgumentParser:
        examples = EXAMPLES.get(name)
        epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
        p = sub.add_parser(
            name,
            help=text,
            description=text,
            parents=[common],
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    train = command("train", _cmd_train, "train one SVM and print validation and test metrics")
    train.add_argument(
        "--data",
        default="digits",
        help="digits, mnist, fashion-mnist, synthetic[:NxDxK], or a .csv/.tsv/.parquet, .npz or svmlight file",
    )
    train.add_argument(
        "--label",
        metavar="COLUMN",
        help="a table's label column (default: one named label, target, y or class, else the last)",
    )
    for name in SVMParams.model_fields:
        _add_setting(train, SVMParams, name, flag="--C" if name == "C" else None)
    for name in FitSettings.model_fields:
        _add_setting(train, FitSettings, name)
    train.add_argument(
        "--scaling", choices=SCALINGS, default=DEFAULT_SCALING, help="feature scaling (default: %(default)s)"
    )
    train.add_argument(
        "--seed",
        type=_checked(int, 0, True, MAX_SEED),
        default=0,
        help="seed of the split and the fit (default: %(default)s)",
    )
    _format_options(train)
    train.add_argument(
        "--from-study",
        metavar="NAME",
        help="redo the final refit of a study's best trial: train+validation, its data, split, epochs and seed, "
        "scored on test, as `svmhpo best` shows it (other options ignored)",
    )
    train.add_argument(
        "--train-only",
        action="store_true",
        help="with --from-study: fit on the training split only and report validation accuracy, as the trial did",
    )
    train.add_argument("--storage", help=STORAGE_HELP + "; with --from-study")
    train.add_argument("--save", metavar="DIR", help="save the trained model (weights.pt and model.json) in DIR")

    predict = command("predict", _cmd_predict, "predict labels of a data file with a study's tuned model")
    predict.add_argument(
        "data",
        metavar="DATA",
        help="digits, or a .csv/.tsv/.parquet, .npz or svmlight file; labels optional; named columns matched by name",
    )
    which = predict.add_mutually_exclusive_group(required=True)
    which.add_argument("--study-name", help="the study whose tuned model predicts")
    which.add_argument("--model", metavar="PATH", help="a saved model directory or zip instead of a study")
    predict.add_argument("--storage", help=STORAGE_HELP)
    predict.add_argument("--out", metavar="FILE", help="write the labels to FILE (CSV, one per row; default: stdout)")

    export = command("export", _cmd_export, "write a study's tuned model as a self-contained directory")
    export.add_argument("--study-name", required=True, help="the study")
    export.add_argument("--storage", help=STORAGE_HELP)
    export.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="a .zip file to write, or else a folder (model.json and weights.pt); either loads with predict --model",
    )
    export.add_argument(
        "--force", action="store_true", help="replace an existing file, or write into a non-empty folder"
    )
    _format_options(export)

    refit = command("refit", _cmd_refit, "redo a study's final refit (same seed and split) and attach its model again")
    refit.add_argument("--study-name", required=True, help="the study")
    refit.add_argument("--storage", help=STORAGE_HELP)
    _format_options(refit)

    for name, handler, text in (
        ("run", _cmd_run, "create or continue a study and run it until its trial budget is met"),
        ("init", _cmd_init, "create a study and record its warm start, running no trials"),
    ):
        p = command(name, handler, text)
        p.add_argument(
            "--config",
            help="study config (TOML), or a shipped one: digits, mnist, fashion-mnist (default: the stored config "
            "of an existing --study-name, else digits)",
        )
        p.add_argument(
            "--trials",
            type=POSITIVE_INT,
            help=f"total budget of finished trials, complete + pruned (default: the config's, {StudyConfig().trials})",
        )
        p.add_argument("--storage", help=STORAGE_HELP)
        p.add_argument("--study-name", help="study name (default: the config's)")
        p.add_argument("--no-warm-start", action="store_true", help="skip the LR-finder warm start")
        p.add_argument(
            "--cv",
            type=_checked(int, 1, True, 20),
            metavar="K",
            help=f"{StudyConfig.model_fields['cv'].description} (default: the config's [study] cv, {StudyConfig().cv})",
        )
        p.add_argument(
            "--metric",
            choices=METRICS,
            help=f"{StudyConfig.model_fields['metric'].description} (default: the config's [study] metric, "
            f"{StudyConfig().metric})",
        )
        _format_options(p)
        if name == "run":
            p.add_argument("--batch-trials", type=POSITIVE_INT, metavar="K", help=batch_help)
            p.add_argument("--jobs", type=POSITIVE_INT, default=1, help="local worker processes (default: 1)")
            p.add_argument("--timeout", type=POSITIVE_FLOAT, help="stop starting trials after this many seconds")
            _output_options(p, QUIET_HELP)

    worker = command("worker", _cmd_worker, "join an existing study and run trials until its budget is met")
    worker.add_argument("--study-name", required=True, help="the study to join")
    worker.add_argument("--storage", help=STORAGE_HELP)
    worker.add_argument("--timeout", type=POSITIVE_FLOAT, help="stop starting trials after this many seconds")
    worker.add_argument(
        "--gpus", help="run one worker process per GPU: all, a count, or ids such as 0,1 (default: one process)"
    )
    worker.add_argument("--batch-trials", type=POSITIVE_INT, metavar="K", help=batch_help)
    # accepted and ignored: older scripts passed it to give each worker its own sampler seed,
    # which every trial now gets from its number (svmhpo.hpo.space.make_sampler)
    worker.add_argument("--worker-index", type=_checked(int, 0, True), help=argparse.SUPPRESS)
    _format_options(worker)
    _output_options(worker, QUIET_HELP)

    studies = command("studies", _cmd_studies, "list the studies in a storage")
    studies.add_argument("--storage", help=STORAGE_HELP)
    _format_options(studies)

    trials = command("trials", _cmd_trials, "list a study's trials: state, value, epochs run, parameters, worker")
    trials.add_argument("--study-name", default="digits", help="the study (default: %(default)s)")
    trials.add_argument("--storage", help=STORAGE_HELP)
    _format_options(trials)

    delete = command("delete", _cmd_delete, "delete a study, its trials and its saved models")
    delete.add_argument("--study-name", required=True, help="the study")
    delete.add_argument("--storage", help=STORAGE_HELP)
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _format_options(delete)

    best = command("best", _cmd_best, "the best trial, its test result and the LinearSVC baseline")
    best.add_argument("--study-name", default="digits", help="the study (default: %(default)s)")
    best.add_argument("--storage", help=STORAGE_HELP)
    _format_options(best)

    report = command("report", _cmd_report, "write a self-contained HTML report of a study")
    report.add_argument("--study-name", default="digits", help="the study (default: %(default)s)")
    report.add_argument("--storage", help=STORAGE_HELP)
    report.add_argument(
        "--out",
        default="reports",
        metavar="PATH",
        help="a .html file to write, or a folder to write <study>.html into (default: %(default)s/)",
    )
    report.add_argument(
        "--force", action="store_true", help="replace an existing file that is not this study's earlier report"
    )
    report.add_argument(
        "--plotlyjs",
        choices=("embed", "cdn"),
        default="embed",
        help="embed plotly.js, so the page works offline (default), or link it from its CDN for a small file",
    )
    _format_options(report)

    dash = command("dashboard", _cmd_dashboard, "serve optuna-dashboard on the study storage")
    dash.add_argument("--storage", help=STORAGE_HELP)
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    dash.add_argument("--port", type=_checked(int, 1, True, 65535), default=8080, help="port (default: %(default)s)")
    return parser


def _not_an_interrupt(record: logging.LogRecord) -> bool:
    """Drop Optuna's report of a trial failed by Ctrl-C: svmhpo says it in one line of its own."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, KeyboardInterrupt) and "KeyboardInterrupt" not in record.getMessage()


def _quiet_optuna() -> None:
    """The command line's own output replaces Optuna's per-trial log lines and experimental warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:  # a logger's own filter misses its children's records
        handler.addFilter(_not_an_interrupt)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _storage_failure(exc: Exception, args: argparse.Namespace) -> SvmhpoError | None:
    """A full disk or a corrupt database file met mid-command, as one line naming the storage."""
    if "sqlalchemy" not in sys.modules and "sqlite3" not in sys.modules:
        return None
    from svmhpo.hpo.storage import resolve_storage_url, storage_failure

    return storage_failure(exc, resolve_storage_url(getattr(args, "storage", None)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        parser.argv = None if argv is None else list(argv)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help or --version (0), or a usage error (2)
        return ExitStatus.OK if exc.code in (0, None) else ExitStatus.USAGE
    if args.command is None:  # a bare `svmhpo`: what it can do
        parser.print_help()
        return ExitStatus.OK
    if args.command != "train":
        _quiet_optuna()
    handler: Callable[[argparse.Namespace], ExitStatus] = args.handler
    try:
        return handler(args)
    except SvmhpoError as exc:
        if args.debug:
            traceback.print_exc()
        if getattr(exc, "interrupted", False):  # Ctrl-C while the database was waited for
            print(f"svmhpo: interrupted: {exc}", file=sys.stderr)
            return ExitStatus.INTERRUPTED
        print(f"svmhpo: error: {exc}", file=sys.stderr)
        return ExitStatus.USER_ERROR
    except Terminated:  # SIGTERM: the host is being taken away; leaving cleanly is success
        print(
            "svmhpo: stopped (SIGTERM): the running trials were put back in the queue for other workers; "
            "finished trials are kept",
            file=sys.stderr,
        )
        return ExitStatus.OK
    except KeyboardInterrupt:
        if args.command in ("run", "worker", "init"):
            print(
                "svmhpo: interrupted: finished trials are kept and the running ones were marked failed; "
                "the same command tops the study up",
                file=sys.stderr,
            )
        else:
            print("svmhpo: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # `svmhpo best --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return ExitStatus.OK
    except Exception as exc:
        failure = _storage_failure(exc, args)
        if failure is not None:
            if args.debug:
                traceback.print_exc()
            print(f"svmhpo: error: {failure}", file=sys.stderr)
            return ExitStatus.USER_ERROR
        traceback.print_exc()
        print("svmhpo: internal error: this is a bug in svmhpo; the traceback above says where", file=sys.stderr)
        return ExitStatus.INTERNAL_ERROR


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``svmhpo`` command (and ``python -m svmhpo``): :func:`main`, then leave at once.

    Python's teardown of torch, Lightning and scikit-learn module by module took 1.2-1.7 s after
    the last line of every command here (``svmhpo run`` printed its summary at 13.2 s and its
    process ended at 14.9 s; a script that only imports them takes 1.2 s to exit). Everything a
    command writes is finished when :func:`main` returns (the study's transactions committed,
    files closed or written atomically, worker processes waited for), so the exit handlers run,
    the output is flushed, and the process ends without the teardown. :func:`main` itself, for
    Python callers and tests, returns as before.
    """
    exit_now(main(argv))


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` after the exit handlers and a flush, skipping the teardown."""
    import atexit

    atexit._run_exitfuncs()  # logging's flush, multiprocessing's and tempfile's clean-ups
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that went away, or a closed stream
            pass
    os._exit(code)
