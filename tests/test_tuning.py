"""The tuned ablation (eval_ablations.py): every arm is reported at values chosen on tuning rounds and
selection data only, by the criterion the verdicts report; arms at different rates share a stack; bad
flags stop the run before anything trains; annealed surrogates end on the hard operator."""
import dataclasses
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

import cli
import data
import engine
import eval_ablations as A
import eval_bool
import eval_cnn
import report
import tuning
from background import background
from models import NaiveBoolNet, NaiveCNN

# --quick made smaller still: every variant and the reference, two sweep points and two lengths, on few rounds
QUICK = ["--quick", "--steps", 20, "--rounds", 3, "--tuning-rounds", 2, "--lengths", "1,2", "--points", 2,
         "--selection", 100]


def main(*argv):
    return cli.main(A.arguments(), A.jobs, [str(a) for a in argv])


class Log:
    """What trained and what was scored, in order: which stacks tune trained and scored, which the study
    trained after tuning and at which per-round rates, which stacks each scorer saw."""

    def __init__(self):
        self.tuning, self.trained, self.scored, self.rates = set(), [], {"selection": set(), "validation": set()}, []
        self.reported, self.in_tune, self.alive = set(), False, []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real_tune, real_rates = tuning.tune, engine.make_optimizer

        def tune(*args, **kwargs):
            self.in_tune = True
            try:
                return real_tune(*args, **kwargs)
            finally:
                self.in_tune = False
        mp.setattr(tuning, "tune", tune)
        mp.setattr(engine, "make_optimizer", lambda name, lr, momentum: self.rates.append((lr, momentum))
                   or real_rates(name, lr, momentum))
        for script in A.SCRIPTS:
            self.spy_train(mp, script)
            for kind in ("selection", "validation"):
                self.spy_scorer(mp, script, kind)

    def spy_train(self, mp, script):
        real = script.train

        def train(s, gen, templates, bar, lr=None, momentum=None):
            stack = real(s, gen, templates, bar, lr, momentum)
            self.alive.append(stack)                     # kept, so that no later stack reuses its id
            if self.in_tune:
                self.tuning.add(id(stack))
            else:
                self.trained.append((stack, lr, momentum, s))
                self.reported.add(id(stack))
            return stack
        mp.setattr(script, "train", train)

    def spy_scorer(self, mp, script, kind):
        real, seen = getattr(script, kind), self.scored[kind]

        class Seen(engine.Scorer):
            def __call__(self, stack):
                seen.add(id(stack))
                return super().__call__(stack)
        mp.setattr(script, kind, lambda *args, **kwargs: Seen(**vars(real(*args, **kwargs))))


@background
def ablation_run(folder):
    """One quick run of both experiments through the command line, every training and scoring spied on, then
    `--plot-only` on its files: (its folder, the spies' log, what the redraw printed)."""
    log = Log()
    with pytest.MonkeyPatch.context() as mp:
        log.install(mp)
        assert main(*QUICK, "--out", folder, "--device", "cpu") == 0
    log.alive = []                     # every id is taken: the stacks that kept them apart need not travel back
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(*QUICK, "--out", folder, "--plot-only") == 0
    return folder, log, printed.getvalue()


def files(out, script):
    tuning_figure, ablation_figure = A.figures(script, script.PROTOCOL, A.OWN[script.NAME])
    read = lambda f: report.read_csv(out / f"{f.name}.csv", f.models, f.columns)
    return read(tuning_figure), read(ablation_figure), json.loads((out / f"ablation_{script.NAME}.json").read_text())


# ----------------------------------------------------------------------------- what chooses and what is reported

def test_no_arm_is_reported_on_rounds_or_data_that_chose_its_rate(ablation_run):
    """Tuning stacks are scored on selection data only; reported stacks are fresh, trained after tuning and
    scored on validation data only."""
    _, log, _ = ablation_run
    assert log.tuning and log.reported and not log.tuning & log.reported
    assert log.scored["selection"] == log.tuning
    assert log.scored["validation"] == log.reported


@pytest.mark.parametrize("script", A.SCRIPTS)
def test_reported_rows_ran_at_the_choice_that_the_grid_rows_make(ablation_run, script):
    """Each arm's reported rows carry the lr and momentum that the JSON records and that the tuning rows,
    re-chosen by the run's criterion, give; the protocol's reference runs untuned at its own."""
    out, _, _ = ablation_run
    grid, rows, recorded = files(out, script)
    chosen = A.choices(grid, recorded["settings"]["study"]["criterion"], recorded["settings"]["solved_at"])
    seen = set()
    for r in rows:
        at = (r.get("lr"), r.get("momentum"))
        if r.model == A.REFERENCE:
            assert at == (script.PROTOCOL.lr, script.PROTOCOL.momentum) and r.get("steps") == 20
            continue
        c = chosen[(r.model, r.sweep, r.get("steps"))]
        json_choice = recorded["settings"]["chosen"][str(r.get("steps"))][r.model][str(r.sweep)]
        assert at == (c.lr, c.momentum) == (json_choice["lr"], json_choice["momentum"])
        seen.add((r.model, r.get("steps")))
    assert seen == {(v, n) for v in A.variants(script, script.PROTOCOL) for n in (20, 40)}, "every arm at every length"


def test_arms_at_different_rates_train_in_one_stack(ablation_run):
    """A variant's sweep points train in one stack, each group at its own chosen values, handed to the
    optimizer as one value per round."""
    _, log, _ = ablation_run
    distinct = 0
    for stack, lr, momentum, s in log.trained:
        if lr is None:                                   # the untuned reference
            continue
        assert len(lr) == len(momentum) == len(stack.groups) > 1
        expected = stack.per_round(lr), stack.per_round(momentum)
        assert any(torch.equal(r[0], expected[0]) and torch.equal(r[1], expected[1]) for r in log.rates
                   if isinstance(r[0], torch.Tensor) and len(r[0]) == stack.networks)
        distinct += len(set(zip(lr, momentum))) > 1
    assert distinct, "no stack held arms at different values"


def tiny(**study):
    base = dataclasses.replace(eval_bool.PROTOCOL, steps=40, rounds=8, max_width=4, solved_at=0.9).check()
    return base, dataclasses.replace(A.OWN["bool"], tuning_rounds=6, selection=300, lengths="1", points=2, **study)


def tiny_run(base, study, seed=0):
    """The tiny study run through the API: what its job recorded, and its rows."""
    job = A.job(eval_bool, base, study)
    rows = job.run(torch.Generator().manual_seed(seed))
    return job.record, rows


def upside_down(mp: pytest.MonkeyPatch, kind: str) -> None:
    """eval_bool's `kind` scorer ("selection" or "validation") made to give every score as 1 - score."""
    real = getattr(eval_bool, kind)

    def scorer(*args, **kwargs):
        inner = real(*args, **kwargs)
        return lambda stack: (lambda s, d: (1 - s, d))(*inner(stack))
    mp.setattr(eval_bool, kind, scorer)


@background
def tiny_runs(folder):
    """The tiny bool study at seed 0 chosen by the solved share (honest), the same chosen by the mean score, and
    the honest one with validation, then selection, scored upside down: {which: (its record, its rows)}."""
    base, study = tiny(criterion="solved")
    runs = {"honest": tiny_run(base, study), "mean": tiny_run(base, dataclasses.replace(study, criterion="mean"))}
    for kind in ("validation", "selection"):
        with pytest.MonkeyPatch.context() as mp:
            upside_down(mp, kind)
            runs[kind] = tiny_run(base, study)
    return runs


def test_the_choice_follows_the_criterion_the_comparison_reports(tiny_runs):
    """The same grid rounds (same seed) chosen by solved share and by mean score: some arm's choice moves,
    and each is the best of the grid rows by its own criterion."""
    base, _ = tiny()
    runs = {"solved": tiny_runs["honest"], "mean": tiny_runs["mean"]}
    grids = {c: rows["tuning_bool"] for c, (_, rows) in runs.items()}
    assert grids["solved"] == grids["mean"]
    chosen = {c: record["chosen"][40] for c, (record, _) in runs.items()}
    assert chosen["solved"] != chosen["mean"]
    for c in chosen:
        again = A.choices(grids[c], c, base.solved_at)
        assert {(m, n): (v["lr"], v["momentum"]) for m, arm in chosen[c].items() for n, v in arm.items()} == \
               {(m, n): (x.lr, x.momentum) for (m, n, _), x in again.items()}


def test_scores_that_could_not_move_a_choice_do_not_and_those_that_could_do(tiny_runs):
    """Validation scored upside down (what is reported): no choice moves, the reported scores do. Selection
    upside down (what chooses): choices move. A choice that looked at the reported rounds would fail this."""
    assert tiny(criterion="solved")[1] == tiny()[1], "the study's default criterion"
    honest, honest_rows = tiny_runs["honest"]
    flipped, flipped_rows = tiny_runs["validation"]
    assert flipped["chosen"] == honest["chosen"]
    assert [r.score for r in flipped_rows["ablation_bool"]] != [r.score for r in honest_rows["ablation_bool"]]
    assert tiny_runs["selection"][0]["chosen"] != honest["chosen"]


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("flags, says", [
    ("--experiment cnn --min-width 7 --max-width 2", "--min-width does not apply to --experiment cnn: it applies to no experiment this run trains"),
    ("--min-width 7 --max-width 2", "--min-width (7) is above --max-width (2)"),
    ("--tuning-rounds 0", "--tuning-rounds must be a positive integer"),
    ("--lengths 1,x", "--lengths must be distinct increasing"),
    ("--lengths 4,1", "--lengths must be distinct increasing"),
    ("--lengths 0,4", "--lengths must be distinct increasing"),
    ("--criterion best", "--criterion"),
    ("--points 1", "--points must be at least 2"),
    ("--long-points 1", "--long-points must be at least 2"),
    ("--selection 0", "--selection must be in [1, 100000]"),
    ("--tuning-rounds 100000000", "this run needs about"),
    ("--lr 0.05", "unrecognized arguments"),
    ("--optimizer adam", "unrecognized arguments"),
])
def test_bad_flags_exit_2_before_anything_trains(flags, says, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained before checking every flag"))
    assert main(*flags.split(), "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("script", A.SCRIPTS)
def test_memory_counts_the_tuning_grid_and_the_selection_sets(script):
    base, study = script.PROTOCOL, A.OWN[script.NAME]
    need = study.memory_bytes(base)
    assert need >= dataclasses.replace(base, rounds=len(tuning.grid("sgd")) * study.tuning_rounds).memory_bytes()
    for more in (dict(tuning_rounds=10 * study.tuning_rounds), dict(selection=50_000)):
        assert dataclasses.replace(study, **more).memory_bytes(base) > need, more


def test_the_study_flags_reach_every_variant_and_the_files_say_so(ablation_run):
    out, _, _ = ablation_run
    for script in A.SCRIPTS:
        grid, rows, recorded = files(out, script)
        settings = recorded["settings"]
        assert all(v["steps"] == 20 and v["rounds"] == 3 for v in settings["variants"].values())
        assert settings["study"]["tuning_rounds"] == 2 and settings["study"]["lengths"] == "1,2"
        assert settings["study"]["points"] == 2 and settings["study"]["selection"] == 100
        assert {r.get("steps") for r in grid} == {20, 40} and {r.round for r in grid} <= set(range(2 + tuning.RACE * 2))
        assert {r.round for r in grid} >= {0, 1}                 # 2 tuning rounds, then any race's 6
        assert settings["variants"]["Adam"]["optimizer"] == "adam"
        for name, changes in script.SURROGATES.items():
            assert all(settings["variants"][name][k] == v for k, v in changes.items())
        for figure in A.figures(script, script.PROTOCOL, A.OWN[script.NAME]):
            assert (out / f"{figure.name}.png").stat().st_size > 10_000


def test_plot_only_prints_the_same_verdicts_from_the_files(ablation_run):
    *_, printed = ablation_run
    for line in ("SGD 3 - SGD 2:", "Adam 2 - SGD 2:", "softplus annealed 2 at 40 - at 20 steps:",
                 "LSE pool 1 - SGD 1:", "tuned SGD 2 - SGD at the protocol's rate 2:", "diverged grid rounds",
                 "40 steps (2x the protocol's):"):
        assert line in printed


# ----------------------------------------------------------------------------- notes and pieces

def test_the_sweep_points_run_from_the_smallest_solving_network_to_the_widest():
    assert A.spread(2, 22, 7) == [2, 3, 4, 7, 10, 15, 22]
    assert A.spread(1, 7, 7) == list(range(1, 8)) and A.spread(2, 22, 2) == [2, 22]
    study = A.OWN["bool"]
    assert A.sizes(eval_bool, eval_bool.PROTOCOL, study, 4) == [eval_bool.SMALL, 22]
    assert A.sizes(eval_cnn, dataclasses.replace(eval_cnn.PROTOCOL, min_filters=3), A.OWN["cnn"], 1) == [3, 4, 5, 6, 7]


def test_notes_mark_grid_edges_and_count_diverged_rounds():
    rows = [report.Row("Adam", 1, 6, r, score, diverged, (("lr", lr), ("momentum", 0.0), ("steps", 100)))
            for lr, score, diverged in ((0.001, 0.2, False), (1.0, 0.5, False), (10.0, 1.0, True)) for r in range(3)]
    rows += [report.Row("SGD", 1, 6, r, score, False, (("lr", lr), ("momentum", m), ("steps", 100)))
             for lr, m, score in ((0.1, 0.0, 1.0), (0.1, 0.5, 0.9), (1.0, 0.0, 0.5)) for r in range(3)]
    text = A.tuning_notes(A.OWN["cnn"])(rows, 1.0)
    assert "Adam                 1: 10* (100 %, lead 0 pts)" in text and "SGD                  1: 0.1/0* (100 %, lead 0 pts)" in text
    assert "100 steps, Adam                 3 of 9 (lr 10: 3)" in text and "SGD                  0 of 9 (none)" in text


def test_a_verdict_whose_interval_holds_zero_says_so():
    same, budget = np.array([1.0, 0.0] * 20), ((6, 10, 2),) * 2
    assert "(interval includes 0); budget a/b" in A.difference("a - b", same, same, 1.0, budget)
    assert "(interval includes 0)" not in A.difference("a - b", np.ones(40), np.zeros(40), 1.0, budget)


@pytest.mark.parametrize("make, x", [
    (lambda: NaiveCNN(3, pool="lse", temperature=0.5, schedule="linear"), data.noise((7,), torch.Generator())),
    (lambda: NaiveBoolNet(4, activation="softplus", schedule="linear"), torch.randn(9, 2))])
def test_an_annealed_surrogate_is_the_hard_operator_at_the_last_step(make, x):
    net = make().eval()
    hard = net(x)
    net.train()
    net.set_progress(1.0)
    torch.testing.assert_close(net(x), hard, rtol=0, atol=0)
    net.set_progress(0.5)
    assert not torch.allclose(net(x), hard)
    params = {k: v.detach()[None].repeat(2, *[1] * v.dim()) for k, v in net.named_parameters()}
    net.set_progress(torch.tensor([1.0, 0.5]))
    stacked = net.stacked_forward(params, x)
    torch.testing.assert_close(stacked[0], hard[:, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(stacked[1], hard[:, 0])


def test_the_engine_tells_each_round_its_progress_ending_at_one_on_its_last_kept_step():
    seen = []

    class Spy(NaiveBoolNet):
        def set_progress(self, progress):
            seen.append(progress.clone())
            super().set_progress(progress)
    gen = torch.Generator().manual_seed(0)
    stack = engine.init_stack([Spy(2, activation="softplus", schedule="linear")], 3, gen)
    lengths = torch.tensor([2, 5, 4])
    batches = [data.and_points((3, 16), gen) for _ in range(5)]
    engine.train(stack, lambda s: ((batches[s][0],), batches[s][1]), 5, engine.make_optimizer("sgd", 0.1, 0.0),
                 lengths=lengths)
    progress = torch.stack(seen)                       # (steps, rounds)
    for r, n in enumerate(lengths.tolist()):
        assert progress[0, r] == 0 and progress[n - 1, r] == 1
        torch.testing.assert_close(progress[:n, r], torch.arange(n) / (n - 1))


def test_an_annealed_arm_tunes_with_each_grid_point_holding_its_own_rounds_progress(monkeypatch):
    """Grid points of one arm train as groups of one stack, at their own sizes, in blocks of rounds; each
    group's template is told its own rounds' progress, so groups must not share one template object."""
    s = dataclasses.replace(eval_bool.PROTOCOL, steps=30, activation="softplus", schedule="linear")
    monkeypatch.setattr(eval_bool, "DATA_BLOCK_BYTES", 5 * 30 * eval_bool.BATCH * 2 * 4)   # blocks of 5 rounds
    arms = [tuning.Arm("softplus annealed", w, s, eval_bool.model(s, "Naive", w)) for w in (2, 9)]
    seen = []
    real = engine.init_stack
    monkeypatch.setattr(engine, "init_stack", lambda templates, *a: seen.append(templates) or real(templates, *a))
    with report.bar(1, "test") as bar:
        chosen, rows = tuning.tune(eval_bool, arms, 4, 50, "mean", torch.Generator().manual_seed(0), bar, lrs=(0.1, 1.0))
    assert len({id(t) for t in seen[0]}) == len(seen[0]) == 2 * 2 * 3
    assert len(rows) == 2 * 2 * 3 * 4 and set(chosen) == {("softplus annealed", 2), ("softplus annealed", 9)}


def test_every_verdict_states_its_budget_three_ways():
    """Each comparison says trained parameters, training compute (forward and backward multiply-adds, as
    search.py counts them) and data seen of a over b: width 7 against 1 filter is 6x the parameters, the
    forward cost's ratio in compute and the same data; a 4x longer run is 4x compute and data."""
    import search
    base, study = A.PROTOCOLS["cnn"], A.OWN["cnn"]
    row = lambda model, n, r, steps: report.Row(model, n, 0, r, float(r % 2), False, (("steps", steps),))
    rows = [row(m, n, r, st) for m in ("SGD", "Adam") for n in (1, 7) for st in (100, 400) for r in range(6)]
    rows += [row(A.REFERENCE, n, r, 100) for n in (1, 7) for r in range(6)]
    text = A.verdicts(eval_cnn, base, study)(rows, 1.0)
    compute = search.cnn_forward_macs(7) / search.cnn_forward_macs(1)
    line = lambda label: next(l for l in text.splitlines() if l.strip().startswith(label + ":"))
    assert line("SGD 7 - SGD 1").endswith(f"budget a/b: trained parameters 6.00x, compute {compute:.2f}x, data 1.00x")
    assert line("Adam 1 - SGD 1").endswith("trained parameters 1.00x, compute 1.00x, data 1.00x")
    assert line("SGD 1 at 400 - at 100 steps").endswith("trained parameters 1.00x, compute 4.00x, data 4.00x")
    assert line(f"tuned SGD 1 - {A.REFERENCE} 7").endswith(f"trained parameters 0.17x, compute {1 / compute:.2f}x, data 1.00x")
