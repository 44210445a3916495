"""``svmhpo report`` on ordinary and degenerate studies: it says what it cannot plot, never crashes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
from plotly.offline import get_plotlyjs

from svmhpo.cli import main
from svmhpo.hpo.studies import read_study
from svmhpo.view.report import write_report


def test_report_is_self_contained_with_every_panel(small_study, tmp_path: Path) -> None:
    url, name = small_study
    assert main(["report", "--study-name", name, "--storage", url, "--out", str(tmp_path)]) == 0
    page = (tmp_path / f"{name}.html").read_text()
    assert re.findall(r"<script[^>]*\bsrc=", page) == []  # plotly.js is inline, nothing is fetched
    assert get_plotlyjs() in page  # the whole library, embedded once, so the page opens offline
    assert "Plotly.newPlot" in page
    assert page.count('class="plotly-graph-div"') >= 8
    for title in (
        "Optimization history",
        "Importances (fANOVA)",
        "Importances (PED-ANOVA)",
        "Parallel coordinates",
        "Slices",
        "Contour of lr × weight_decay",
        "Learning curves",
        "LR finder (warm start)",
    ):
        assert title in page
    assert "sklearn.svm.LinearSVC" in page and "refit on train+val" in page


def _study(tmp_path: Path, name: str) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(study_name=name, storage=url, direction="maximize")  # a study of another tool
    return read_study(name, url)


def _params(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-4, 1, log=True)
    trial.suggest_float("weight_decay", 1e-7, 1e-1, log=True)
    trial.suggest_categorical("optimizer", ["sgd", "adam"])


def test_report_on_one_trial(tmp_path: Path) -> None:
    study = _study(tmp_path, "one")
    study.optimize(lambda t: (_params(t), t.report(0.5, 0), 0.9)[-1], n_trials=1)
    page = write_report(study, tmp_path).read_text()
    assert "Optimization history" in page
    assert "Not plotted" in page and "needs at least 2 complete trial(s), the study has 1" in page
    assert "run without a warm start" in page


def test_report_with_all_trials_pruned_and_a_failed_one(tmp_path: Path) -> None:
    study = _study(tmp_path, "pruned")

    def objective(trial: optuna.Trial) -> float:
        _params(trial)
        if trial.number == 3:
            raise RuntimeError("boom")
        trial.report(0.2 + trial.number / 10, 0)
        raise optuna.TrialPruned()

    study.optimize(objective, n_trials=4, catch=(RuntimeError,))
    page = write_report(study, tmp_path).read_text()
    assert "3 pruned, 1 failed" in page
    assert "No trial has completed yet" in page
    assert "Learning curves" in page and 'class="plotly-graph-div"' in page  # pruned curves still drawn
    assert "needs at least 1 complete trial(s), the study has 0" in page


def test_an_odd_study_name_gives_a_safe_file_and_an_escaped_page(tmp_path: Path, noop_trainer, capsys) -> None:
    name = "a/b <script>alert(1)</script> é"
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    assert main(["run", "--trials", "6", "--no-warm-start", "--study-name", name, "--storage", url, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", "--study-name", name, "--storage", url, "--out", str(tmp_path / "r")]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "r" / "a_b_script_alert_1_script.html"
    page = path.read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<th>split</th><td>72% train, 8% validation, 20% test, stratified, seed 0</td>" in page
    assert "<th>data</th><td>digits, scaling standard</td>" in page
    # the model zip is named the same safe way
    assert main(["best", "--study-name", name, "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["final"]["model_file"].startswith("a_b_script_alert_1_script-trial")
    # linked rather than embedded, plotly.js leaves the page small
    cdn = ["report", "--study-name", name, "--storage", url, "--out", str(tmp_path / "c"), "--plotlyjs", "cdn"]
    assert main(cdn) == 0
    small = Path(capsys.readouterr().out.strip())
    assert small.stat().st_size < 500_000 < path.stat().st_size
    assert 'src="https://cdn.plot.ly/plotly-' in small.read_text()


def test_figures_fit_the_page_and_importances_say_what_they_rest_on(small_study: tuple[str, str]) -> None:
    from svmhpo.view.plots import study_panels

    url, name = small_study
    study = read_study(name, url)
    panels = {p.title: p for p in study_panels(study)}
    assert panels["Slices"].figure is not None and panels["Slices"].figure.layout.width is None  # no 1,500 px slices
    complete = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    for title in ("Importances (fANOVA)", "Importances (PED-ANOVA)"):
        assert f"Computed on the {complete} complete trials of {len(study.trials)}" in panels[title].note


def test_axes_name_the_metric_and_each_importance_says_its_own_method(small_study: tuple[str, str]) -> None:
    from svmhpo.view.plots import study_panels, target

    url, name = small_study
    study = read_study(name, url)
    panels = {p.title: p for p in study_panels(study)}
    history = panels["Optimization history"].figure
    TARGET = target(study)
    assert TARGET == "validation accuracy (val_acc)"
    assert history.layout.yaxis.title.text == TARGET
    assert panels["Slices"].figure.layout.yaxis.title.text == TARGET
    assert (
        TARGET
        in panels["Learning curves (intermediate val_acc; pruned trials included)"].figure.layout.yaxis.title.text
    )
    notes = [panels[t].note for t in ("Importances (fANOVA)", "Importances (PED-ANOVA)")]
    assert notes[0] != notes[1]
    assert "random forest" in notes[0] and "random forest" not in notes[1]
    assert "best trials" in notes[1]
    assert "Objective Value" not in str([p.figure.to_dict() for p in panels.values() if p.figure is not None])
