"""Pruning inside a batch: a member is pruned against the finished trials and its running peers.

The decision is Optuna's median pruner on that evidence (the finished trials plus the peers
that count, as trials completed at this epoch), so it is checked against Optuna's own
``MedianPruner`` on a study that holds exactly that evidence; which peers count is checked on
its own; and a real batched study (the no-op trainer) prunes its first batch with peers and
never without.
"""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from svmhpo.hpo.config import load_config
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.runner import run_trials
from svmhpo.hpo.space import SnapshotPruner
from svmhpo.hpo.studies import start_study
from svmhpo.testing import NoOpTrainer

STEPS = 6


def _median() -> optuna.pruners.MedianPruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def _curve(base: float, slope: float = 0.02, upto: int = STEPS) -> dict[int, float]:
    return {s: round(base + slope * s, 4) for s in range(upto)}


def _completed(number: int, curve: dict[int, float]) -> FrozenTrial:
    return create_trial(value=curve[max(curve)], intermediate_values=curve, state=TrialState.COMPLETE)


def _peer(number: int, curve: dict[int, float]) -> FrozenTrial:
    """A running peer as MemberPruning hands it over: completed at its last epoch."""
    trial = _completed(number, curve)
    trial.number = number
    trial.datetime_complete = datetime.datetime.now()
    return trial


def _running(number: int, curve: dict[int, float]) -> FrozenTrial:
    trial = create_trial(state=TrialState.RUNNING, intermediate_values=curve)
    trial.number = number
    return trial


def _study(finished: list[dict[int, float]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for i, curve in enumerate(finished):
        study.add_trial(_completed(i, curve))
    return study


FINISHED = [_curve(0.5 + 0.05 * i) for i in range(6)]  # medians 0.625 + 0.02·step
PEERS = [_curve(b) for b in (0.2, 0.3, 0.62, 0.7, 0.8, 0.9)]


@pytest.mark.parametrize("finished", [[], FINISHED[:3], FINISHED], ids=["no-finished", "three", "six"])
def test_a_members_decision_is_optunas_median_on_the_finished_trials_and_the_counted_peers(finished) -> None:
    study = _study(finished)
    pruner = SnapshotPruner(_median())
    bar_values = {s: sorted(c[s] for c in finished) for s in range(STEPS)}
    decided = 0
    for step, base in itertools.product(range(STEPS), (0.1, 0.4, 0.55, 0.61, 0.65, 0.75, 0.95)):
        member = _running(100, _curve(base, upto=step + 1))
        peers = [_peer(200 + i, dict(itertools.islice(c.items(), step + 1))) for i, c in enumerate(PEERS)]
        ours = pruner.prune_member(study, member, [100], peers)
        # the peers that count: best so far at least the finished trials' median at this step
        if bar_values[step]:
            bar = float(__import__("numpy").percentile(bar_values[step], 50))
            counted = [p for p in peers if max(p.intermediate_values.values()) >= bar]
        else:
            counted = peers
        twin = _study(finished)
        for p in counted:
            twin.add_trial(_completed(0, p.intermediate_values))
        assert ours == _median().prune(twin, member), (step, base)
        decided += ours
    assert 0 < decided < STEPS * 7  # the evidence made both answers


def test_weak_peers_do_not_pull_the_median_down_and_strong_ones_raise_it() -> None:
    study, pruner, step = _study(FINISHED), SnapshotPruner(_median()), 3
    member = _running(100, _curve(0.6, upto=step + 1))  # best 0.66 < the finished median at 3 (0.685)
    weak = [_peer(200 + i, _curve(0.1, upto=step + 1)) for i in range(20)]
    strong = [_peer(300 + i, _curve(0.95, upto=step + 1)) for i in range(20)]
    assert pruner.prune_member(study, member, [100]) is True  # on the finished trials alone
    assert pruner.prune_member(study, member, [100], weak) is True  # twenty weak peers change nothing
    above = _running(101, _curve(0.7, upto=step + 1))  # above the finished median
    assert pruner.prune_member(study, above, [101]) is False
    assert pruner.prune_member(study, above, [101], strong) is True  # below finished + strong peers


def test_with_no_finished_trial_the_running_peers_are_the_evidence() -> None:
    study, pruner = _study([]), SnapshotPruner(_median())
    peers = [_peer(200 + i, _curve(0.1 * i, upto=4)) for i in range(1, 9)]
    assert pruner.prune_member(study, _running(100, _curve(0.15, upto=4)), [100]) is False  # Optuna: no evidence
    assert pruner.prune_member(study, _running(100, _curve(0.15, upto=4)), [100], peers) is True
    assert pruner.prune_member(study, _running(101, _curve(0.75, upto=4)), [101], peers) is False
    # before the warm-up steps nothing is pruned, peers or not
    assert pruner.prune_member(study, _running(102, _curve(0.0, upto=2)), [102], peers) is False


@pytest.mark.parametrize("mode", ["peers", "finished"])
def test_a_first_batch_is_pruned_only_with_peers(tmp_path: Path, study_config, mode: str) -> None:
    """16 members, no finished trial before them: the median pruner has no evidence but the peers."""
    config = load_config(
        study_config("first", trials=16, epochs=STEPS, warm=False, batch_trials=16, batch_pruning=mode)
    )
    study = start_study(config, f"sqlite:///{tmp_path / 'first.db'}")
    counts = run_trials(study, BatchObjective(config, None, batch_trials=16, fit_fn=NoOpTrainer(0.0)))
    assert counts.finished == 16 and counts.running == 0
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    if mode == "finished":
        assert pruned == []
        return
    assert 0 < len(pruned) < 16
    for trial in pruned:  # pruned after the warm-up, with its curve up to the epoch it was stopped at
        assert max(trial.intermediate_values) >= 2
        assert sorted(trial.intermediate_values) == list(range(max(trial.intermediate_values) + 1))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert min(t.value for t in complete) > max(t.value for t in pruned)  # the weaker ones went


def test_batch_pruning_is_a_per_run_setting(tmp_path: Path, study_config) -> None:
    """A study run with peers continues with ``finished`` (and back): like batch_trials, not the study's identity."""
    url = f"sqlite:///{tmp_path / 'per-run.db'}"
    first = load_config(study_config("per-run", trials=4, warm=False, batch_pruning="peers"))
    start_study(first, url)
    again = load_config(study_config("per-run", trials=8, warm=False, batch_pruning="finished"))
    assert start_study(again, url).study_name == "per-run"


def test_progress_moves_member_by_member_not_batch_by_batch(tmp_path: Path, study_config) -> None:
    config = load_config(study_config("moving", trials=16, epochs=STEPS, warm=False, batch_trials=8))
    study = start_study(config, f"sqlite:///{tmp_path / 'moving.db'}")
    seen = []
    counts = run_trials(
        study, BatchObjective(config, None, batch_trials=8, fit_fn=NoOpTrainer(0.0)), on_counts=seen.append
    )
    assert counts.finished == 16
    finished = [c.finished for c in seen]
    assert sorted(set(finished)) == list(range(17))  # every count from 0 to 16 was shown
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(finished))
    assert seen[-1].running == 0 and seen[-1].best == counts.best


def test_a_members_duration_is_its_own_training(tmp_path: Path, study_config) -> None:
    """Members are asked one after another, then trained together: each one's start is the fit's,
    and a pruned member ends before the ones that train on."""
    config = load_config(study_config("durations", trials=16, epochs=STEPS, warm=False, batch_trials=16))
    study = start_study(config, f"sqlite:///{tmp_path / 'durations.db'}")
    run_trials(study, BatchObjective(config, None, batch_trials=16, fit_fn=NoOpTrainer(0.02)))
    trials = study.get_trials()
    assert len({t.datetime_start for t in trials}) == 1  # the fit's start, not each one's ask
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert complete and pruned
    assert max(t.datetime_complete for t in pruned) < min(t.datetime_complete for t in complete)
    seconds = {t.number: (t.datetime_complete - t.datetime_start).total_seconds() for t in trials}
    assert min(seconds[t.number] for t in complete) >= STEPS * 0.02
