"""K linear SVMs trained side by side as one Lightning model: the members of a batch of trials.

One update of a digits trial is about fifteen eager ops on a 64×10 weight matrix, so a trial's
time is dispatch overhead, per update, per epoch and per fit, not arithmetic. Stacking K
members makes one update cost about what one member's does, which is what
``[training] batch_trials`` buys a study (see :mod:`svmhpo.hpo.objective`).

Each member has its own hyperparameters (every field of :class:`~svmhpo.svm.params.SVMParams`:
rate, weight decay, loss variant, optimizer family, C and margin) and makes exactly the updates
of a single-member :class:`~svmhpo.svm.model.SVMModule` fit with the same parameters, initial
weights and sample order:

- the members of one optimizer family share a stacked weight ``(K_f, C, d)`` and bias ``(K_f, C)``;
  one GEMM computes every member's logits for a shared mini-batch;
- each member's mean hinge loss and its gradient are computed once per loss variant present and
  picked per member, so each member's gradient is its own; the gradient is written in closed
  form (autograd's values, see :meth:`BatchedSVMModule.member_losses`), since autograd's
  per-update graph was a third of a batched update;
- :class:`StackedOptimizer` applies torch.optim's SGD, ASGD, Adam and AdamW rules (and Bottou's
  schedule as ``LambdaLR`` drives it) with per-member rates and decays as tensors. Measured on
  2 cores at K = 32, one param group per member in torch.optim cost 1.0 ms (SGD) and 2.7 ms
  (Adam) per update, these stacked rules 0.22 and 0.33 ms; ``tests/svm/test_batched.py`` checks
  every member against a torch.optim fit.

Members can be stopped at any epoch (pruned, or diverged: a NaN/inf loss stops that member
alone). A stopped member is dropped from the stacks, so it makes no further update and costs
nothing; the fit ends when no member is left. The interface a study drives (``live``,
``val_acc``, ``take_diverged``, ``stop``) is :class:`~svmhpo.svm.members.MemberFit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from svmhpo.svm.data import DeviceData, TensorBatches
from svmhpo.svm.folds import FoldedFit, make_folds
from svmhpo.svm.members import MemberFit, MemberWatch, Watching
from svmhpo.svm.model import LinearSVM
from svmhpo.svm.optim import SCHEDULE_POWER
from svmhpo.svm.params import METRICS, OPTIMIZERS, FitSettings, Metric, SVMParams
from svmhpo.svm.scores import member_scores
from svmhpo.svm.training import MAX_CHUNK_SAMPLES, quiet_trainer, train_loader

__all__ = ["BatchedSVMModule", "StackedOptimizer", "fit_batch", "fit_folds"]

_FIT = FitSettings()
#: torch.optim's defaults for the Adam family and ASGD, which the single-member fit uses.
_BETAS, _EPS = (0.9, 0.999), 1e-8
#: Updates whose per-member coefficients StackedOptimizer computes at once.
_TABLE_STEPS = 512


class StackedOptimizer(torch.optim.Optimizer):
    """torch.optim's updates for stacked members, with per-member rates and weight decays.

    Each param group is one optimizer family: ``params`` is ``[W, b]`` (``W`` of shape
    ``(K, C, d)`` decayed, ``b`` of shape ``(K, C)`` never decayed), ``rule`` is ``sgd``,
    ``asgd``, ``adam`` or ``adamw``, ``lr`` and ``weight_decay`` are float64 tensors of shape
    ``(K,)``, and ``t0`` is the update after which ASGD averages. The rules are those of
    ``torch.optim.SGD``, ``ASGD(lambd=0, alpha=0.75)``, ``Adam`` and ``AdamW`` at their defaults,
    with the rate of update ``t`` set by Bottou's factor ``1/(1 + λ·η₀·t)^p`` as ``LambdaLR``
    sets it after each step (ASGD reads it one step late, as torch's ASGD does).
    """

    def __init__(self, groups: list[dict]) -> None:
        super().__init__(groups, defaults={})
        for group in self.param_groups:
            group.setdefault("t0", 0.0)
            group["step"] = 0
            group["table"] = None  # per-member coefficients of the next updates, see _coefficients

    def _rate(self, group: dict, steps: Tensor) -> Tensor:
        """Per-member rates at update counts ``steps`` (0-based), shape ``(len(steps), K)``, in
        float64 as ``LambdaLR`` computes them in Python."""
        power = SCHEDULE_POWER[group["rule"]]
        lr = group["lr"].view(1, -1)
        if power is None:
            return lr.expand(len(steps), -1)
        return lr * (1.0 / (1.0 + group["weight_decay"].view(1, -1) * lr * steps.view(-1, 1)) ** power)

    def _coefficients(self, group: dict, W: Tensor, t: int) -> dict[str, Tensor]:
        """The per-member coefficients of update ``t``, rounded to the weights' dtype, on their device.

        Scalars that torch.optim computes in Python (double) are computed in float64 here and
        rounded once, as torch rounds a Python scalar into a float32 kernel (a per-member rate
        rounded earlier moved Adam's weights by 4e-5, relative, over ten digits epochs). They
        are tabulated for :data:`_TABLE_STEPS` updates at a time: one index per update instead
        of a dozen small ops.
        """
        table = group["table"]
        if table is None or not table["start"] <= t < table["start"] + _TABLE_STEPS:
            steps = torch.arange(t, t + _TABLE_STEPS, dtype=torch.float64)
            wd = group["weight_decay"].view(1, -1)
            rule = group["rule"]
            columns: dict[str, Tensor] = {"wd": wd}
            if rule in ("sgd", "asgd"):
                # torch's ASGD reads its rate one update late: the lr LambdaLR set before the last step
                columns["eta"] = self._rate(group, (steps - 1).clamp_min(0) if rule == "asgd" else steps)
            else:
                eta = self._rate(group, steps)
                columns["step_size"] = eta / (1 - _BETAS[0] ** (steps + 1)).view(-1, 1)
                columns["decay"] = 1 - eta * wd  # AdamW's decoupled decay
            table = {k: v.to(dtype=W.dtype, device=W.device) for k, v in columns.items()}
            table["start"] = t
            group["table"] = table
        i = t - table["start"]
        return {k: v[i if len(v) > 1 else 0] for k, v in table.items() if k != "start"}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            W, b = group["params"]
            if W.grad is None:
                continue
            t = group["step"]
            group["step"] = t + 1
            c = self._coefficients(group, W, t)
            rule = group["rule"]
            if rule in ("sgd", "asgd"):
                eta = c["eta"]
                W.sub_(eta.view(-1, 1, 1) * (W.grad + c["wd"].view(-1, 1, 1) * W))
                b.sub_(eta.view(-1, 1) * b.grad)
                if rule == "asgd":
                    self._average(group, W, b, t + 1)
            else:
                self._adam(W, b, t + 1, c, decoupled=rule == "adamw")
        return None

    def _average(self, group: dict, W: Tensor, b: Tensor, step: int) -> None:
        """ASGD's Polyak average ``ax``: a copy of the iterate until ``t0`` updates, then a running mean."""
        mu = 1.0 / max(1.0, step - 1 - group["t0"]) if step > 1 else 1.0
        for p in (W, b):
            state = self.state[p]
            if "ax" not in state or mu == 1.0:
                state["ax"] = p.detach().clone()
            else:
                ax = state["ax"]
                ax.add_(p.sub(ax).mul_(torch.tensor(mu, dtype=p.dtype, device=p.device)))

    def _adam(self, W: Tensor, b: Tensor, step: int, c: dict[str, Tensor], *, decoupled: bool) -> None:
        beta1, beta2 = _BETAS
        bias2_sqrt = (1 - beta2**step) ** 0.5
        for p, decayed in ((W, True), (b, False)):
            shape = (-1,) + (1,) * (p.ndim - 1)
            grad = p.grad
            if decayed:
                if decoupled:
                    p.mul_(c["decay"].view(shape))
                else:
                    grad = grad + c["wd"].view(shape) * p
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(_EPS)
            p.sub_(c["step_size"].view(shape) * exp_avg / denom)

    def averaged(self, p: Tensor) -> Tensor:
        """ASGD's averaged iterate of ``p``, or ``p`` itself before the first update or for other rules."""
        return self.state.get(p, {}).get("ax", p)

    def keep(self, group_index: int, rows: Tensor) -> None:
        """Keep only the members at ``rows`` of a group: parameters, rates and optimizer state."""
        group = self.param_groups[group_index]
        for p in group["params"]:
            p.grad = None
            p.data = p.data[rows]
            for key, value in self.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.ndim:
                    self.state[p][key] = value[rows]
        cpu_rows = rows.cpu()
        group["lr"] = group["lr"][cpu_rows]
        group["weight_decay"] = group["weight_decay"][cpu_rows]
        group["table"] = None


class BatchedSVMModule(pl.LightningModule):
    """The members of a batch as one LightningModule: stacked linear SVMs, one update for all.

    ``members`` gives each member's hyperparameters; ``init`` the weight and bias every member
    starts from (a single :class:`~svmhpo.svm.model.LinearSVM`'s, so that member ``i`` starts
    where a single fit with the same seed does). Training walks chunks in mini-batches of
    ``batch_size`` as :class:`~svmhpo.svm.model.SVMModule` does; validation records each live
    member's ``metric`` (one of :data:`~svmhpo.svm.params.METRICS`) in :attr:`val_score` (with
    ASGD's averaged weights).
    """

    def __init__(
        self,
        members: Sequence[SVMParams],
        init: LinearSVM,
        *,
        batch_size: int = _FIT.batch_size,
        steps_per_epoch: int = 1,
        held_out: Sequence[int] | None = None,
        metric: Metric = "accuracy",
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if not members:
            raise ValueError("a batch needs at least one member")
        if held_out is not None and len(held_out) != len(members):
            raise ValueError(f"held_out needs one fold per member: {len(held_out)} for {len(members)}")
        FitSettings(batch_size=batch_size)
        self.automatic_optimization = False
        self.members = tuple(members)
        #: Each member's held-out fold (:mod:`svmhpo.svm.folds`): batches then carry each sample's
        #: fold, a member trains on the others and is validated on its own. ``None``: no folds.
        self.held_out = None if held_out is None else tuple(held_out)
        self.n_classes = init.n_classes
        self.metric = metric
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        weight, bias = init.linear.weight.detach(), init.linear.bias.detach()
        #: Member numbers of each family's stack, in stack order (families in OPTIMIZERS order).
        self._families = [(name, [i for i, m in enumerate(self.members) if m.optimizer == name]) for name in OPTIMIZERS]
        self._families = [(name, ids) for name, ids in self._families if ids]
        self.weights = nn.ParameterList(
            [nn.Parameter(weight.expand(len(ids), *weight.shape).clone()) for _, ids in self._families]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(bias.expand(len(ids), *bias.shape).clone()) for _, ids in self._families]
        )
        self._val_score: dict[int, float] = {}
        self._diverged: dict[int, str] = {}
        self._refresh_member_tensors()

    # --- members ------------------------------------------------------------------------------
    @property
    def live(self) -> tuple[int, ...]:
        return tuple(i for _, ids in self._families for i in ids)

    @property
    def val_score(self) -> dict[int, float]:
        return dict(self._val_score)

    def take_diverged(self) -> dict[int, str]:
        diverged, self._diverged = self._diverged, {}
        return diverged

    def stop(self, members: Iterable[int]) -> None:
        gone = set(members)
        if not gone & set(self.live):
            return
        # Callbacks stop members from on_validation_end, inside Lightning's inference mode; the
        # compacted stacks must be ordinary tensors, which the next update can change in place.
        with torch.inference_mode(False):
            self._drop(gone)
        if not self.live and self._trainer is not None:
            self.trainer.should_stop = True

    def _drop(self, gone: set[int]) -> None:
        optimizer = self._stacked_optimizer()
        for g, (_, ids) in enumerate(self._families):
            keep = [row for row, i in enumerate(ids) if i not in gone]
            if len(keep) == len(ids):
                continue
            rows = torch.tensor(keep, dtype=torch.long, device=self.weights[g].device)
            if optimizer is not None:
                optimizer.keep(g, rows)
            else:
                for p in (self.weights[g], self.biases[g]):
                    p.data = p.data[rows]
            ids[:] = [ids[row] for row in keep]
        for i in gone:
            self._val_score.pop(i, None)
        self._refresh_member_tensors()

    def _stacked_optimizer(self) -> StackedOptimizer | None:
        if self._trainer is None or not self.trainer.optimizers:
            return None
        optimizer = self.trainer.optimizers[0]
        return optimizer if isinstance(optimizer, StackedOptimizer) else None

    def _refresh_member_tensors(self) -> None:
        """Per-member loss settings of the live members, in stack order, on the module's device."""
        live = [self.members[i] for i in self.live]
        device = self.weights[0].device
        dtype = self.weights[0].dtype

        def column(values: list, kind=dtype) -> Tensor:
            return torch.tensor(values, dtype=kind, device=device).view(-1, 1)

        self._margin = column([m.margin for m in live])
        self._C = column([m.C for m in live]).view(-1)
        if self.held_out is not None:
            self._held_out = torch.tensor([self.held_out[i] for i in self.live], device=device).view(-1, 1)
        self._squared = column([m.squared for m in live], torch.bool)
        self._ovr = column([m.strategy == "one_vs_rest" for m in live], torch.bool)
        self._any_squared, self._all_squared = bool(self._squared.any()), bool(self._squared.all())
        self._any_ovr, self._all_ovr = bool(self._ovr.any()), bool(self._ovr.all())

    def on_fit_start(self) -> None:
        self._refresh_member_tensors()  # now on the training device

    # --- forward and loss -----------------------------------------------------------------------
    def _stack(self, averaged: bool = False) -> tuple[Tensor, Tensor]:
        """Every live member's weights as one ``(K·C, d)`` matrix and biases as ``(K·C,)``."""
        optimizer = self._stacked_optimizer() if averaged else None
        ws, bs = [], []
        for W, b in zip(self.weights, self.biases, strict=True):
            if W.shape[0] == 0:
                continue
            if optimizer is not None:
                W, b = optimizer.averaged(W), optimizer.averaged(b)
            ws.append(W.reshape(-1, W.shape[-1]))
            bs.append(b.reshape(-1))
        if len(ws) == 1:
            return ws[0], bs[0]
        return torch.cat(ws), torch.cat(bs)

    def forward(self, x: Tensor, *, averaged: bool = False) -> Tensor:
        """Logits of every live member, shape ``(K, N, outputs)``."""
        W, b = self._stack(averaged)
        k = len(self.live)
        return torch.addmm(b, x, W.T).view(len(x), k, -1).transpose(0, 1)

    def member_losses(self, logits: Tensor, y: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Each live member's own mean hinge loss ``(K,)`` and its gradient w.r.t. the logits ``(K, N, outputs)``.

        The gradient is written out rather than left to autograd, which cost 0.4 ms per update
        at K = 16 on digits (30 graph nodes), about a third of a batched update. It is what
        autograd gives for :class:`~svmhpo.svm.losses.MultiClassHingeLoss` and
        :class:`~svmhpo.svm.losses.BinaryHingeLoss`, value for value: ``C/N`` per sample, times
        ``2ξ`` when squared, where the pre-clamp slack is ``≥ 0`` (``clamp_min``'s rule); the
        max over other classes shares its gradient evenly among ties (``amax``'s rule).

        ``mask`` ``(K, N)`` (fold members): each member's loss is the mean over its own samples
        (``True``), the others weighted zero.
        """
        if mask is None:
            n = y.shape[0]
            coef = (self._C / n).view(-1, 1)  # autograd: C, then mean's 1/N
            weight = None
        else:
            weight = mask.to(logits.dtype) / mask.sum(dim=1, keepdim=True).clamp_min(1)
            coef = self._C.view(-1, 1) * weight

        def mean(value: Tensor) -> Tensor:
            return value.mean(dim=1) if weight is None else (value * weight).sum(dim=1)

        if self.n_classes == 2:
            sign = (y * 2 - 1).to(logits.dtype)
            pre = self._margin - sign * logits.squeeze(-1)
            value, d_pre = self._hinge(pre, self._squared, coef)
            return self._C * mean(value), (-sign * d_pre).unsqueeze(-1)
        is_true = torch.nn.functional.one_hot(y, logits.shape[-1]).to(torch.bool)
        value = grad = None
        if not self._all_ovr:
            true_score = logits.gather(-1, y.view(1, -1, 1).expand(*logits.shape[:-1], 1)).squeeze(-1)
            others = logits.masked_fill(is_true, float("-inf"))
            best_other = others.amax(dim=-1)
            value, d_pre = self._hinge(self._margin - (true_score - best_other), self._squared, coef)
            ties = others == best_other.unsqueeze(-1)
            grad = (d_pre / ties.sum(dim=-1)).unsqueeze(-1) * ties - d_pre.unsqueeze(-1) * is_true
        if self._any_ovr:
            signs = is_true.to(logits.dtype) * 2 - 1
            per_class, d_pre = self._hinge(
                self._margin.unsqueeze(-1) - signs * logits, self._squared.unsqueeze(-1), coef.unsqueeze(-1)
            )
            ovr_value, ovr_grad = per_class.sum(dim=-1), -signs * d_pre
            if value is None:
                value, grad = ovr_value, ovr_grad
            else:
                value = torch.where(self._ovr, ovr_value, value)
                grad = torch.where(self._ovr.unsqueeze(-1), ovr_grad, grad)
        return self._C * mean(value), grad

    def _hinge(self, pre: Tensor, squared: Tensor, coef: Tensor) -> tuple[Tensor, Tensor]:
        """Slack ``ξ = [pre]₊`` (squared where asked) and its gradient ``coef·(1 or 2ξ)·[pre ≥ 0]``."""
        slack = pre.clamp_min(0.0)
        if self._all_squared:
            value, slope = slack.square(), 2 * slack
        elif not self._any_squared:
            value, slope = slack, torch.ones_like(slack)
        else:
            value, slope = torch.where(squared, slack.square(), slack), torch.where(squared, 2 * slack, 1.0)
        return value, torch.where(pre >= 0, coef * slope, 0.0)

    # --- training -------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        if not self.live:
            return None
        x, y, *fold = batch
        optimizer = self.optimizers()
        losses = []
        folds = fold[0].split(self.batch_size) if fold else [None] * -(-len(x) // self.batch_size)
        with torch.no_grad():
            for xb, yb, fb in zip(x.split(self.batch_size), y.split(self.batch_size), folds, strict=True):
                mask = None if fb is None else fb.view(1, -1) != self._held_out
                member, grad = self.member_losses(self(xb), yb, mask)
                self._set_grads(xb, grad)
                optimizer.step()
                losses.append(member)
        chunk = losses[0] if len(losses) == 1 else torch.stack(losses).mean(dim=0)
        finite = torch.isfinite(chunk)
        if not bool(finite.all()):
            live = self.live
            bad = (~finite).nonzero().view(-1).tolist()
            values = chunk.tolist()
            for row in bad:
                self._diverged[live[row]] = f"training loss became {values[row]} at epoch {self.current_epoch}"
            self.stop(live[row] for row in bad)
        return chunk.sum() if self.live else None

    def _set_grads(self, x: Tensor, grad_logits: Tensor) -> None:
        """Each stack's weight and bias gradients from the logits' gradient, as ``addmm``'s backward forms them."""
        g = grad_logits.transpose(0, 1).reshape(len(x), -1)  # (N, K·outputs), the layout of the logits
        grad_w = x.t().mm(g).t()
        grad_b = g.sum(dim=0)
        row = 0
        for W, b in zip(self.weights, self.biases, strict=True):
            rows = W.shape[0] * W.shape[1]
            if rows:
                W.grad = grad_w[row : row + rows].reshape(W.shape)
                b.grad = grad_b[row : row + rows].reshape(b.shape)
            row += rows

    # --- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_members(self, x: Tensor) -> Tensor:
        """Predicted class indices of every live member, shape ``(K, N)`` (ASGD: averaged weights)."""
        logits = self(x, averaged=True)
        if self.n_classes == 2:
            return (logits.squeeze(-1) > 0).long()
        return logits.argmax(dim=-1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if not self.live:
            return
        x, y, *fold = batch
        own = fold[0].view(1, -1) == self._held_out if fold else None  # each fold member on its held-out fold
        scores = member_scores(self.predict_members(x), y, self.n_classes, self.metric, own)
        self._val_score = dict(zip(self.live, scores, strict=True))

    def member_state(self, member: int, *, averaged: bool = True) -> dict[str, Tensor]:
        """The weight and bias of a live member (ASGD: the averaged iterate), as a LinearSVM holds them."""
        optimizer = self._stacked_optimizer() if averaged else None
        for g, (_, ids) in enumerate(self._families):
            if member in ids:
                row = ids.index(member)
                W, b = self.weights[g], self.biases[g]
                if optimizer is not None:
                    W, b = optimizer.averaged(W), optimizer.averaged(b)
                return {"linear.weight": W[row].detach().clone(), "linear.bias": b[row].detach().clone()}
        raise KeyError(f"member {member} is not live")

    def on_train_end(self) -> None:
        """Fold ASGD's averaged iterates into the stacks, as a single fit does at its end."""
        optimizer = self._stacked_optimizer()
        if optimizer is not None:
            with torch.no_grad():
                for p in (*self.weights, *self.biases):
                    averaged = optimizer.averaged(p)
                    if averaged is not p and averaged.shape == p.shape:
                        p.copy_(averaged)

    def configure_optimizers(self) -> StackedOptimizer:
        groups = []
        for g, (name, ids) in enumerate(self._families):
            groups.append(
                {
                    "params": [self.weights[g], self.biases[g]],
                    "rule": name,
                    "lr": torch.tensor([self.members[i].lr for i in ids], dtype=torch.float64),
                    "weight_decay": torch.tensor([self.members[i].weight_decay for i in ids], dtype=torch.float64),
                    "t0": float(self.steps_per_epoch),
                }
            )
        return StackedOptimizer(groups)


def fit_batch(
    members: Sequence[SVMParams],
    data: DeviceData,
    *,
    epochs: int = _FIT.epochs,
    batch_size: int = _FIT.batch_size,
    seed: int = 0,
    callbacks: Sequence[pl.Callback] = (),
    watch: MemberWatch | None = None,
    metric: Metric = "accuracy",
) -> tuple[BatchedSVMModule, pl.Trainer]:
    """Train ``members`` side by side on ``data``: one Lightning fit, one shuffle, shared initial weights.

    Every member starts from the weights a single fit with ``seed`` starts from and sees the
    samples in that fit's order, so member ``i`` ends where
    ``fit(members[i], data, seed=seed, ...)`` does. ``watch`` (or the callbacks) steer it as a
    :class:`~svmhpo.svm.members.MemberFit`: read :attr:`~BatchedSVMModule.val_score` after each
    validation (each member's ``metric``), stop members.
    """
    steps = -(-len(data.x_train) // batch_size)
    init = _seeded_init(data, seed)
    module = BatchedSVMModule(members, init, batch_size=batch_size, steps_per_epoch=steps, metric=metric)
    val = TensorBatches(data.x_val, data.y_val, len(data.x_val))
    trainer = _train(module, train_loader(data, batch_size, seed), val, epochs, callbacks, watch, module)
    return module, trainer


def _seeded_init(data: DeviceData, seed: int) -> LinearSVM:
    """The weights a single fit with ``seed`` starts from, without touching the global RNG's state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LinearSVM(data.n_features, data.n_classes)


def _train(
    module: BatchedSVMModule,
    train: TensorBatches,
    val: TensorBatches,
    epochs: int,
    callbacks: Sequence[pl.Callback],
    watch: MemberWatch | None,
    fit: MemberFit,
) -> pl.Trainer:
    """One quiet Lightning fit of ``module``, with ``watch`` told about ``fit`` (the module as its members)."""
    if watch is not None:
        callbacks = [*callbacks, Watching(watch, fit)]
    with quiet_trainer(epochs, callbacks=callbacks) as trainer:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    return trainer


def fit_folds(
    members: Sequence[SVMParams],
    data: DeviceData,
    *,
    k: int,
    fold_seed: int,
    epochs: int = _FIT.epochs,
    batch_size: int = _FIT.batch_size,
    seed: int = 0,
    callbacks: Sequence[pl.Callback] = (),
    watch: MemberWatch | None = None,
    metric: Metric = "accuracy",
) -> tuple[FoldedFit, pl.Trainer]:
    """Train each of ``members`` on ``k`` folds of ``data``'s training and validation samples
    (:func:`~svmhpo.svm.folds.make_folds` with ``fold_seed``), all ``len(members)·k`` fold members
    side by side in one fit, and return the fit as its trials (:class:`~svmhpo.svm.folds.FoldedFit`).

    Every fold member starts from the weights a fit with ``seed`` starts from and walks the same
    shuffle of all the samples, its held-out fold weighted zero (see :mod:`svmhpo.svm.folds`).
    """
    folds = make_folds(data, k, fold_seed)
    n = len(folds.x)
    module = BatchedSVMModule(
        [m for m in members for _ in range(k)],
        _seeded_init(data, seed),
        batch_size=batch_size,
        steps_per_epoch=-(-n // batch_size),
        held_out=[fold for _ in members for fold in range(k)],
        metric=metric,
    )
    fit = FoldedFit(module, len(members), k)
    chunk = max(1, min(batch_size * max(1, MAX_CHUNK_SAMPLES // batch_size), n))
    train = TensorBatches(folds.x, folds.y, chunk, shuffle=True, seed=seed, fold=folds.fold)
    val = TensorBatches(folds.x, folds.y, n, fold=folds.fold)
    return fit, _train(module, train, val, epochs, callbacks, watch, fit)
