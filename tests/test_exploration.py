"""The exploration study: every arm at its own rates chosen on tuning rounds by the reported criterion, best of k
chosen on a selection set, declared columns, budgets three ways, selection noise and the oracle bound, flags."""
import csv
import dataclasses
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

import cli
import engine
import eval_bool
import eval_cnn
import eval_exploration as X
import report
import search
import tuning
from background import background
from hypernet import Z_DIM

torch.set_num_threads(1)          # tiny tensors on shared cores


def main(*argv):
    return cli.main(X.arguments(), X.jobs, [str(a) for a in argv])


def tiny(x, **own):
    """Settings small enough for a test that trains: a few rounds and steps, two sizes."""
    sizes = {"min_filters": 1, "max_filters": 2} if x is eval_cnn else {"min_width": 2, "max_width": 3}
    s = dataclasses.replace(x.PROTOCOL, rounds=4, steps=20, **sizes).check()
    o = dataclasses.replace(X.OWN[x.NAME], restarts=2, samples=2, tuning_rounds=3, lengths=1, **own)
    return s, o.check_with(s)


def run(x, s, o, seed=0):
    record = {}
    return X.run(x, s, o, torch.Generator().manual_seed(seed), record), record


# ----------------------------------------------------------------------------- choosing

def test_best_of_follows_the_selection_scores_and_breaks_ties_early():
    selection = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.7, 0.7]])
    validation = torch.tensor([[0.8, 0.2, 0.95], [0.3, 0.6, 0.9]])
    assert X.best_of(selection, validation, 1).tolist() == pytest.approx([0.8, 0.3])
    assert X.best_of(selection, validation, 2).tolist() == pytest.approx([0.2, 0.3])
    assert X.best_of(selection, validation, 3).tolist() == pytest.approx([0.2, 0.3])


def test_oracle_bound_is_at_least_any_selection_and_a_validation_selection_gives_it():
    gen = torch.Generator().manual_seed(11)
    validation = torch.rand(40, 6, generator=gen)
    for k in range(1, 7):
        bound = X.best_of(validation, validation, k)
        torch.testing.assert_close(bound, validation[:, :k].max(1).values)
        for _ in range(5):
            assert (bound >= X.best_of(torch.rand(40, 6, generator=gen), validation, k)).all()


def test_powers_of_two():
    assert X.powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64]
    assert X.powers_of_two(6) == [1, 2, 4, 6] and X.powers_of_two(1) == [1]


def test_pools_share_candidates_only_at_equal_rates():
    """The best of 2 and of 6 at one rate share one pool of 6; at another rate the best of 2 has its own."""
    a2, a6, wide = X.Arm("Naive", 1, 2), X.Arm("Naive", 1, 6), X.Arm("Naive", 7, 1)
    same = X.pools_of([(a2, (0.1, 0.5)), (a6, (0.1, 0.5)), (wide, (0.1, 0.5))])
    assert same[0] == same[1] and same[0].count == 6 and same[2].count == 1
    apart = X.pools_of([(a2, (1.0, 0.0)), (a6, (0.1, 0.5))])
    assert apart[0] != apart[1] and apart[0].count == 2
    hyper = X.pools_of([(X.Arm(X.HYPER, 1, 1), (0.1, 0.0)), (X.Arm(X.SAMPLED, 1, 64), (0.1, 0.0))])
    assert hyper[0] == hyper[1] and hyper[0].count == 1        # one trained network, 1 + samples generated


@pytest.mark.parametrize("x", [eval_cnn, eval_bool])
def test_each_pool_owns_its_own_candidates(x):
    """Pools of different counts in one stack: each pool's columns hold its own family, size and count."""
    s, o = tiny(x)
    small = [f for f, _ in X.families(x, s, o)]
    pools = [X.Pool("Naive", max(s.sizes()), 1, 0.1, 0.0)] + [X.Pool(f, x.SMALL, c, lr, 0.0) for f in small
                                                                 for c, lr in ((3, 0.1), (2, 1.0))]
    with report.bar(None, "test") as bar:
        stack, columns = X.train_pools(x, s, o, pools, torch.Generator().manual_seed(0), bar)
    assert len(stack.groups) == sum(p.count for p in pools)
    for p in pools:
        groups = stack.groups[columns[p]]
        assert len(groups) == p.count
        assert all(g.template.trained_params == x.model(s, p.family, p.size).trained_params for g in groups)
    hyper = [X.Pool(X.HYPER, x.SMALL, 1, lr, 0.0) for lr in (0.1, 1.0)]
    with report.bar(None, "test") as bar:
        stack, columns = X.train_pools(x, s, o, hyper, torch.Generator().manual_seed(0), bar)
    assert [columns[p] for p in hyper] == [slice(0, 1 + o.samples), slice(1 + o.samples, 2 + 2 * o.samples)]


def fabricated(monkeypatch, x):
    """Tuning scores made up per pool: at lr 0.1 every candidate scores 0.99 (best mean, never solved); at lr 1 a
    candidate solves every other round and scores 0.5 otherwise; at any other rate 0.1."""
    def train_and_score(x_, s, o, pools, sets, gen, bar, stack_of):
        unique = list(dict.fromkeys(pools))
        columns, start = {}, 0
        for p in unique:
            columns[p] = slice(start, start + p.count + (o.samples if p.family == X.HYPER else 0))
            start = columns[p].stop
        scores = torch.full((s.rounds, start), 0.1)
        for p, cols in columns.items():
            if p.lr == 0.1:
                scores[:, cols] = 0.99
            elif p.lr == 1.0:
                scores[::2, cols], scores[1::2, cols] = 1.0, 0.5
        flags = torch.zeros_like(scores, dtype=torch.bool)
        return X.Trained(columns, {n: scores for n in sets}, {n: flags for n in sets})
    monkeypatch.setattr(X, "train_and_score", train_and_score)


@pytest.mark.parametrize("x", [eval_cnn, eval_bool])
def test_the_study_chooses_by_the_criterion_it_reports(monkeypatch, x):
    """Where the best-mean rate (0.1) and the best-solved rate (1) differ, --criterion solved picks 1 and
    --criterion mean picks 0.1, for every arm: width, best of k, the HyperNetwork and its latents."""
    fabricated(monkeypatch, x)
    s, o = tiny(x)
    s = dataclasses.replace(s, solved_at=1.0)
    wanted = X.arms(x, s, o, list(s.sizes()))
    for criterion, lr in (("solved", 1.0), ("mean", 0.1)):
        with report.bar(None, "test") as bar:
            chosen, _ = X.tune(x, s, dataclasses.replace(o, criterion=criterion), wanted, 4,
                               torch.Generator().manual_seed(0), bar)
        assert {c.lr for c in chosen.values()} == {lr}, criterion
        assert {c.momentum for c in chosen.values()} == {0.0}           # ties: the smaller momentum


def test_tuning_never_sees_a_validation_set(monkeypatch):
    """A spy: any validation set drawn while tuning fails the test."""
    s, o = tiny(eval_bool)
    monkeypatch.setattr(eval_bool, "validation", lambda *a, **k: (_ for _ in ()).throw(AssertionError("looked")))
    with report.bar(None, "test") as bar:
        chosen, rows = X.tune(eval_bool, s, o, X.arms(eval_bool, s, o, list(s.sizes())), 3,
                              torch.Generator().manual_seed(0), bar)
    assert chosen and rows


@pytest.fixture(scope="module")
def honest_tiny():
    """One tiny bool run through the API (seed 0), every call of eval_bool.train recorded: (rounds, trained
    parameters of each template, lr, momentum). Shared by the tests below that read an honest run."""
    calls = []
    real = eval_bool.train

    def train(s, gen, templates, bar, lr=None, momentum=None):
        calls.append((s.rounds, [t.trained_params for t in templates], lr, momentum))
        return real(s, gen, templates, bar, lr, momentum)
    s, o = tiny(eval_bool)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(eval_bool, "train", train)
        rows, record = run(eval_bool, s, o)
    return s, o, rows, record, calls


def test_the_rates_do_not_depend_on_the_reported_rounds(monkeypatch, honest_tiny):
    """Score every validation set upside down: the chosen rates and the tuning rows must not change, the
    reported scores must."""
    s, o, honest, record, _ = honest_tiny
    real = eval_bool.validation

    def upside_down(*a, **k):
        scorer = real(*a, **k)
        return engine.Scorer(scorer.data, lambda out, y: 1 - scorer.metric(out, y), scorer.shared)
    monkeypatch.setattr(eval_bool, "validation", upside_down)
    flipped, record2 = run(eval_bool, s, o)
    assert record2["chosen"] == record["chosen"]
    assert [r.score for r in flipped["exploration_tuning_bool"]] == [r.score for r in honest["exploration_tuning_bool"]]
    assert [r.score for r in flipped["exploration_bool"]] != [r.score for r in honest["exploration_bool"]]
    assert len({c["lr"] for c in record["chosen"]["20"].values()}) > 1, "a choice must be made"


def test_width_and_restarts_train_in_one_stack_each_at_its_own_rate(honest_tiny):
    """The reported wide networks and restarts are one stack with one learning rate and momentum per group."""
    s, o, _, record, calls = honest_tiny
    reported = [c for c in calls if c[0] == s.rounds]
    mixed = [c for c in reported if {4 * 3 + 1, 9} <= set(c[1])]          # Naive(3) and Naive(2) candidates
    assert mixed, "width and restarts must share a stack"
    _, params, lrs, momenta = mixed[0]
    assert len(lrs) == len(params) == len(momenta)
    triples = set(zip(params, lrs, momenta))
    chosen = record["chosen"]["20"]
    for arm, size in (("Naive(3)", 13), ("best of 2 Naive(2)", 9)):
        assert (size, chosen[arm]["lr"], chosen[arm]["momentum"]) in triples, arm
    assert (13, s.lr, s.momentum) in triples                          # the protocol's rates, same stack


# ----------------------------------------------------------------------------- scoring and budgets

def test_block_scoring_equals_the_engines(monkeypatch):
    """`scored` draws each block of rounds once for every group; it must give engine.evaluate's scores."""
    monkeypatch.setattr(X, "BLOCK_BYTES", 300_000)                  # several blocks
    gen = torch.Generator().manual_seed(3)
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=7, steps=5)
    with report.bar(None, "test") as bar:
        stack = eval_cnn.train(s, gen, [eval_cnn.model(s, "Naive", n) for n in (1, 3, 1)], bar)
    scorer = eval_cnn.validation(s, gen, cycle=7)
    scores, diverged = X.scored(stack, scorer)
    expected, flags = scorer(stack)
    torch.testing.assert_close(scores, expected.view(3, 7).t())
    assert torch.equal(diverged, flags.view(3, 7).t())


def test_generated_networks_at_z0_score_as_the_hypernetwork_at_z0():
    gen = torch.Generator().manual_seed(9)
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=6, steps=5)
    with report.bar(None, "test") as bar:
        stack = eval_cnn.train(s, gen, [eval_cnn.model(s, "HyperNetwork", 1)], bar)
    scorer = eval_cnn.validation(s, gen, cycle=6)
    out = X.generated(stack, 3, gen)
    assert len(out.groups) == 4 and out.networks == 24
    torch.testing.assert_close(X.scored(out, scorer)[0][:, 0], scorer(stack)[0])


def test_forward_macs_are_search_pys():
    for n in (1, 4, 7):
        assert X.forward_macs(eval_cnn, eval_cnn.PROTOCOL, eval_cnn.model(eval_cnn.PROTOCOL, "Naive", n)) == \
            search.cnn_forward_macs(n)
    for w in (2, 22):
        assert X.forward_macs(eval_bool, eval_bool.PROTOCOL, eval_bool.model(eval_bool.PROTOCOL, "Naive", w)) == \
            search.bool_forward_macs(w)


def test_budgets_three_ways():
    """Restarts train k networks and score k candidates on the selection set; they see k times the batches
    and the selection set once; a hypernetwork trains once whatever the number of latents."""
    s, o = eval_cnn.PROTOCOL, X.OWN["cnn"]
    one = search.gradient_step_macs(search.cnn_forward_macs(1), 2) * 100
    pick = search.evaluation_macs(search.cnn_forward_macs(1), 400)
    assert X.budget(eval_cnn, s, o, X.Arm("Naive", 1, 6)) == X.Budget(36, 6, 6 * one + 6 * pick, 6 * 200 + 400)
    assert X.budget(eval_cnn, s, o, X.Arm("Naive", 7, 1)) == X.Budget(
        36, 36, search.gradient_step_macs(search.cnn_forward_macs(7), 2) * 100, 200)
    assert X.budget(eval_cnn, s, o, X.Arm("RandomConv", 1, 18)).trained_params == 36
    b = X.budget(eval_bool, eval_bool.PROTOCOL, X.OWN["bool"], X.Arm("Naive", 2, 10))
    assert (b.trained_params, b.final_size, b.examples) == (90, 9, 10 * 500 * 16 + 500)
    z0, k64 = (X.budget(eval_cnn, s, o, X.Arm(m, 1, k)) for m, k in ((X.HYPER, 1), (X.SAMPLED, 64)))
    assert z0.trained_params == k64.trained_params == 33 and z0.final_size == k64.final_size == 5
    assert k64.examples == z0.examples + 400


# ----------------------------------------------------------------------------- one quick run per experiment

# --quick made smaller still: every arm (width, best of k, the HyperNetwork and its latents), both lengths, the
# selection-noise sizes and the tuning grid are all there, on fewer rounds and candidates.
QUICK = ["--quick", "--rounds", 4, "--steps", 20, "--tuning-rounds", 2, "--restarts", 2, "--samples", 2,
         "--long-rounds", 2, "--long-tuning-rounds", 2, "--selection", 50, "--selection-growth", 2]


@background
def exploration_runs(folder):
    """One quick run of each experiment, then `--plot-only` in its folder: {experiment: (its folder, the run's
    status, what it printed, the redraw's status)}."""
    out = {}
    for name in X.SCRIPTS:
        printed = io.StringIO()
        with redirect_stdout(printed):
            code = main(*QUICK, "--experiment", name, "--out", folder / name, "--device", "cpu")
        with redirect_stdout(io.StringIO()):
            redrawn = main(*QUICK, "--experiment", name, "--plot-only", "--out", folder / name)
        out[name] = (folder / name, code, printed.getvalue(), redrawn)
    return out


@pytest.fixture(scope="module", params=["cnn", "bool"])
def quick(request, exploration_runs):
    """The quick run of each experiment (its folder and what it printed), and the settings and study settings its
    flags give (x, s, o)."""
    out, code, printed, _ = exploration_runs[request.param]
    assert code == 0
    job, = X.jobs(X.arguments().parse_args([str(a) for a in (*QUICK, "--experiment", request.param)]))
    return X.SCRIPTS[request.param], job.settings, job.study, out, printed


def read(quick, which=""):
    x, s, o, out, _ = quick
    fig = {"": X.figure, "selection_": X.selection_figure, "tuning_": X.tuning_figure}[which](x, o, s)
    return report.read_csv(out / f"{fig.name}.csv", fig.models, fig.columns)


def test_quick_run_writes_declared_columns_and_records_its_choices(quick):
    x, s, o, out, _ = quick
    for stem in ("", "selection_", "tuning_"):
        png = (out / f"exploration_{stem}{x.NAME}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        tests = x.TEST_COLUMNS if stem == "" else ()           # every reported network is measured on the test set
        with open(out / f"exploration_{stem}{x.NAME}.csv") as f:
            assert tuple(next(csv.reader(f))) == report.COLUMNS + tuple(c.name for c in (*X.COLUMNS, *tests))
    recorded = json.loads((out / f"exploration_{x.NAME}.json").read_text())
    assert recorded["quick"] is True and recorded["settings"]["study"] == dataclasses.asdict(o)
    plain_quick, = X.jobs(X.arguments().parse_args(["--quick", "--experiment", x.NAME]))
    assert o.restarts == 2 and plain_quick.study.restarts == 3                  # what --quick alone caps it at
    rows = read(quick)
    for r in rows:
        if X.key(r, "rates") == X.TUNED:
            chosen = recorded["settings"]["chosen"][str(X.key(r, "steps"))][X.name(X.arm_of(r))]
            assert (X.key(r, "lr"), X.key(r, "momentum")) == (chosen["lr"], chosen["momentum"])
        else:
            assert (X.key(r, "lr"), X.key(r, "momentum"), X.key(r, "steps")) == (s.lr, s.momentum, s.steps)
    assert {X.key(r, "steps") for r in rows} == {s.steps, s.steps * o.length_growth}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_sweep_is_the_network_size_and_k_is_its_own_column(quick):
    x, s, o, _, _ = quick
    rows = read(quick)
    for r in rows:
        arm = X.arm_of(r)
        if arm.candidates > 1 or arm.model in (X.HYPER, X.SAMPLED):
            assert r.sweep == x.SMALL
        if arm.model in (X.HYPER, X.SAMPLED):
            assert r.params == x.model(s, X.HYPER, 1).trained_params
        else:
            assert r.params == arm.candidates * x.model(s, arm.model, r.sweep).trained_params
    tuned = {X.arm_of(r) for r in rows if X.key(r, "rates") == X.TUNED and X.key(r, "steps") == s.steps}
    assert {a.candidates for a in tuned if a.model == "Naive" and a.size == x.SMALL} == set(range(1, o.restarts + 1))
    assert {a.size for a in tuned if a.model == "Naive" and a.candidates == 1} == set(s.sizes())
    assert {a.candidates for a in tuned if a.model == X.SAMPLED} == set(X.powers_of_two(o.samples))
    longer = {X.arm_of(r) for r in rows if X.key(r, "steps") > s.steps}
    assert {a.size for a in longer if a.model == "Naive" and a.candidates == 1} <= {x.SMALL, max(s.sizes())}
    assert all(sum(1 for r in rows if X.arm_of(r) == a and X.key(r, "steps") == s.steps
                   and X.key(r, "rates") == X.TUNED) == s.rounds for a in tuned)


def test_recorded_choices_are_tuning_choose_on_the_grid_rows(quick):
    """Each tuned arm's rates are tuning.choose's on its grid rows, by the solved share; a best of k > 1 small
    networks takes the rates of one small network, chosen on every candidate of its tuning pool."""
    x, s, o, out, _ = quick
    recorded = json.loads((out / f"exploration_{x.NAME}.json").read_text())["settings"]["chosen"]
    grid = read(quick, "tuning_")
    tables = {}
    for r in grid:
        tables.setdefault((X.key(r, "steps"), X.name(X.arm_of(r))), {}).setdefault(
            (X.key(r, "lr"), X.key(r, "momentum")), []).append(r.score)
    for (steps, arm), table in tables.items():
        choice = tuning.choose({p: np.array(v) for p, v in table.items()}, "solved", s.solved_at)
        assert (recorded[str(steps)][arm]["lr"], recorded[str(steps)][arm]["momentum"]) == (choice.lr, choice.momentum)
        assert len(table) == len(tuning.grid(s.optimizer))
    one = X.name(X.Arm("Naive", x.SMALL, 1))
    assert len(tables[(s.steps, one)][(0.1, 0.0)]) == o.tuning_rounds * o.restarts     # every candidate counts
    for steps, arms in recorded.items():
        for k in range(2, o.restarts + 1):
            assert arms[X.name(X.Arm("Naive", x.SMALL, k))] == arms[one]


def test_selection_noise_rows_from_the_same_candidates(quick):
    """Per round the oracle bound is the same at every selection size and at least the chosen candidate; on the
    default selection set the choice is the main figure's best of the largest k."""
    x, s, o, _, _ = quick
    rows, main_rows = read(quick, "selection_"), read(quick)
    main = {(X.arm_of(r), X.key(r, "steps"), X.key(r, "rates"), r.round): r.score for r in main_rows}
    sizes = [o.selection * o.selection_growth ** i for i in range(3)]
    by = {(X.arm_of(r), X.key(r, "steps"), X.key(r, "rates"), X.key(r, "selection"), X.key(r, "chosen_on"), r.round):
          r.score for r in rows}
    bounded = [k for k in by if k[4] == "validation"]
    assert bounded, "oracle rows expected"
    for arm, steps, rates, size, _, rnd in bounded:
        assert len({by[(arm, steps, rates, z, "validation", rnd)] for z in sizes}) == 1
        assert all(by[(arm, steps, rates, size, "validation", rnd)] >= by[(arm, steps, rates, z, "selection", rnd)]
                   for z in sizes)
        assert by[(arm, steps, rates, o.selection, "selection", rnd)] == main[(arm, steps, rates, rnd)]


def test_printed_comparisons(quick):
    x, s, o, _, printed = quick
    small, top = x.SMALL, max(s.sizes())
    assert f"{s.steps} steps, tuned rates:" in printed and f"{s.steps} steps, protocol rates:" in printed
    assert f"Naive({top}) - best of {o.restarts} Naive({small}): mean" in printed
    assert f"HyperNetwork, best of {o.samples} sampled latents - HyperNetwork, z = 0: mean" in printed
    assert "budget a/b: trained parameters" in printed
    assert f"independent tries 1 - (1 - p)^{o.restarts} from one Naive({small})" in printed
    assert "oracle - chosen" in printed and "rates by criterion on the tuning rounds" in printed


def test_plot_only_redraws(quick, exploration_runs):
    x, *_ = quick
    assert exploration_runs[x.NAME][3] == 0


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("argv, message", [
    (["--restarts", "0"], "--restarts must be a positive integer"),
    (["--samples", "-2"], "--samples must be in [1, 4096]"),
    (["--selection", "0"], "--selection must be in [1, 100000]"),
    (["--criterion", "best"], "argument --criterion: invalid choice"),
    (["--lengths", "9"], "--lengths must be in [1, 4]"),
    (["--experiment", "bool", "--min-filters", "4"], "--min-filters does not apply to --experiment bool"),
    (["--experiment", "cnn", "--max-width", "4"], "--max-width does not apply to --experiment cnn"),
    (["--samples", "x"], "invalid int value"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert main(*argv, "--quick", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("experiment", ["cnn", "bool"])
def test_the_memory_check_counts_the_selection_sets(experiment, tmp_path, capsys):
    """Refused before anything trains: a run whose selection sets would not fit (not a --quick run, which
    caps the rounds)."""
    assert main("--experiment", experiment, "--selection", "100000", "--rounds", "100000", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert "GiB at once" in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_a_flag_the_run_applies_is_accepted():
    jobs = X.jobs(X.arguments().parse_args(["--experiment", "cnn", "--min-filters", "2", "--quick"]))
    assert [job.settings.min_filters for job in jobs] == [2]
    assert not jobs[0].at_defaults()


def test_help_names_each_experiments_defaults():
    text = " ".join(X.arguments().format_help().split())
    assert "(default: 500 (cnn), 50 (bool))" in text and "(default: 6 (cnn), 10 (bool))" in text
    assert "(default: 200 (cnn), 500 (bool))" in text and "(default: solved (cnn), solved (bool))" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_quick_run_on_cuda(tmp_path):
    assert main("--quick", "--experiment", "bool", "--rounds", "4", "--out", tmp_path, "--device", "cuda") == 0
    assert json.loads((tmp_path / "exploration_bool.json").read_text())["device_used"].startswith("cuda")
