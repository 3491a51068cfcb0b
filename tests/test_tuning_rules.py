"""The shared tuning rules (tuning.py): the choice follows the criterion the comparison reports, ties are
broken as documented, and nothing but the selection scores of the tuning rounds decides."""
import dataclasses
import types

import numpy as np
import pytest
import torch

import engine
import eval_bool
import report
import tuning


def test_the_choice_follows_the_reported_criterion():
    """The best-mean rate and the best-solved rate differ: each criterion picks its own."""
    scores = {(0.1, 0.0): np.array([0.99, 0.99, 0.99, 0.99]),        # best mean, never solved
              (1.0, 0.0): np.array([1.0, 1.0, 0.5, 0.5])}            # solves half the rounds
    assert tuning.choose(scores, "mean", solved_at=1.0).lr == 0.1
    assert tuning.choose(scores, "solved", solved_at=1.0).lr == 1.0


def test_ties_go_to_the_better_mean_then_the_smaller_rate_and_momentum():
    flat = {(lr, m): np.ones(3) for lr in (0.1, 0.3, 1.0) for m in (0.0, 0.5)}
    assert (tuning.choose(flat, "solved", 1.0).lr, tuning.choose(flat, "solved", 1.0).momentum) == (0.1, 0.0)
    flat[(1.0, 0.5)] = np.array([1.0, 1.0, 1.0])
    flat[(0.1, 0.0)] = np.array([1.0, 1.0, 0.999])                  # same solved share (2/3 at 1.0): worse mean
    choice = tuning.choose(flat, "solved", solved_at=0.9995)
    assert choice.value == 1.0 and (choice.lr, choice.momentum) == (0.1, 0.5)     # (0.1, 0) solves 2 of 3


def test_edges_of_the_grid_are_marked():
    scores = {(lr, 0.0): np.full(2, v) for lr, v in ((0.01, 0.5), (0.1, 0.6), (1.0, 0.9))}
    assert tuning.choose(scores, "mean", 1.0).edge
    scores[(1.0, 0.0)] = np.full(2, 0.1)
    assert not tuning.choose(scores, "mean", 1.0).edge


def test_the_picks_of_redrawn_tuning_rounds_are_choose_itself_in_a_loop():
    """tuning.picks against its definition, a plain loop: for each bootstrap redraw of every point's tuning
    rounds (drawn point by point from the same generator), tuning.choose on the redrawn table. A table whose
    ties are broken by the mean (8, 8 and 8 of 12 rounds solved) and by the rate (a copy at a larger rate)."""
    rng = np.random.default_rng(11)
    table = {(lr, m): np.where(rng.random(12) < p, 1.0, 0.9 + 0.09 * rng.random(12)).astype(np.float32)
             for (lr, m), p in {(0.1, 0.0): 0.6, (0.3, 0.0): 0.55, (0.3, 0.5): 0.5, (1.0, 0.0): 0.2}.items()}
    for criterion in ("solved", "mean"):
        first = tuning.choose(table, criterion, 1.0)
        table[(10.0, 0.0)] = table[(first.lr, first.momentum)].copy()    # the same rounds, a larger rate: a tie
        assert tuning.choose(table, criterion, 1.0) == first
        draw = np.random.default_rng(7)
        drawn = {p: v[draw.integers(0, len(v), (300, len(v)))] for p, v in table.items()}
        chosen = [(lambda c: (c.lr, c.momentum))(tuning.choose({p: d[b] for p, d in drawn.items()}, criterion, 1.0))
                  for b in range(300)]
        picks = tuning.picks(table, criterion, 1.0, resamples=300, seed=7)
        assert picks == {p: chosen.count(p) / 300 for p in table}, criterion
        firm = tuning.firmness(table, criterion, 1.0, resamples=300, seed=7)
        assert firm.same == picks[(first.lr, first.momentum)] and 0.2 < firm.same < 0.9
        value = lambda p: tuning.criterion_value(table[p], criterion, 1.0)
        assert firm.gap == max(value((first.lr, first.momentum)) - value(p) for p, k in picks.items()
                               if k >= tuning.CONTENDER and p != (first.lr, first.momentum))
        del table[(10.0, 0.0)]


def test_a_clear_choice_is_firm_a_coin_toss_is_not_and_a_flat_optimum_leads_by_nothing():
    clear = {(0.1, 0.0): np.ones(20, np.float32), (1.0, 0.0): np.zeros(20, np.float32)}
    assert tuning.firmness(clear, "solved", 1.0) == tuning.Firmness(1.0, 0.0, 1)
    rng = np.random.default_rng(0)
    toss = {(lr, 0.0): (rng.random(20) < 0.5).astype(np.float32) for lr in (0.1, 0.3)}
    assert 0.2 < tuning.firmness(toss, "solved", 1.0).same < 0.8
    flat = {(lr, 0.0): np.ones(20, np.float32) for lr in (0.1, 0.3)}          # equal: the tie-break chooses,
    assert tuning.firmness(flat, "solved", 1.0) == tuning.Firmness(1.0, 0.0, 2)   # alike in every redraw: 2 tied
    assert tuning.firmness_text(tuning.Firmness(1.0, 0.0, 2), "solved") == "100 %, lead 0 pts, 2 tied"
    solved = lambda k: np.array([1.0] * k + [0.5] * (20 - k), np.float32)
    rare = {(0.1, 0.0): solved(18), (0.3, 0.0): solved(17), (1.0, 0.0): solved(14)}    # lr 1: chosen in 1.5 %
    assert 0 < tuning.picks(rare, "solved", 1.0)[(1.0, 0.0)] < tuning.CONTENDER
    assert tuning.firmness(rare, "solved", 1.0).gap == pytest.approx(0.05)              # the lead over lr 0.3 only
    assert tuning.firmness_text(tuning.Firmness(0.654, 0.04), "solved") == "65 %, lead 4 pts"


def test_grid_has_momentum_only_where_the_optimizer_takes_one():
    assert {m for _, m in tuning.grid("sgd")} == set(tuning.MOMENTUM_GRID)
    assert {m for _, m in tuning.grid("adam")} == {0.0}


def test_tune_trains_each_arm_at_each_point_and_chooses_on_selection_rows(monkeypatch):
    """Every arm gets len(grid) groups of `rounds` rounds; its choice is the best of its own selection rows;
    the selection set is the only data scored."""
    import dataclasses
    s = dataclasses.replace(eval_bool.PROTOCOL, steps=20)
    arms = [tuning.Arm("Naive", w, s, eval_bool.model(s, "Naive", w)) for w in (2, 3)]
    monkeypatch.setattr(eval_bool, "validation", lambda *a, **k: (_ for _ in ()).throw(AssertionError("looked")))
    with report.bar(1, "test") as bar:
        chosen, rows = tuning.tune(eval_bool, arms, 3, 50, "mean", torch.Generator().manual_seed(0), bar, lrs=(0.01, 1.0))
    assert len(rows) == 2 * 2 * 3 * 3                          # arms x lrs x momenta x rounds
    for (model, width), choice in chosen.items():
        means = {}
        for r in rows:
            if r.sweep == width:
                means.setdefault((r.get("lr"), r.get("momentum")), []).append(r.score)
        best = max(means, key=lambda k: (np.mean(means[k]), -k[0], -k[1]))
        assert (choice.lr, choice.momentum) == best


@dataclasses.dataclass(frozen=True)
class Toy:
    """The settings tuning.tune reads (a grid without momentum)."""
    rounds: int = 1
    optimizer: str = "adam"
    solved_at: float = 1.0
    steps: int = 10


class ToyNet(torch.nn.Module):
    final_size = 3


def toy_script(solved: dict[tuple[float, int], int]):
    """A script whose networks at lr solve solved[(lr, rounds)] of `rounds` rounds (the first ones), the rest
    scoring 0.5: no training, only the bookkeeping tune and race do. Records each stack it trains."""
    trained = []

    def train(s, gen, templates, bar, lr, momentum):
        torch.rand(1, generator=gen)                          # as a real script draws its batches
        trained.append((s.rounds, list(lr)))
        groups = [engine.Group(t, i * s.rounds, (i + 1) * s.rounds) for i, t in enumerate(templates)]
        return types.SimpleNamespace(groups=groups, networks=len(templates) * s.rounds, lrs=list(lr), rounds=s.rounds)

    def selection(s, gen, size, count):
        torch.rand(1, generator=gen)                          # and its sets
        def score(stack):
            x = torch.cat([torch.tensor([1.0] * solved[(lr, stack.rounds)] + [0.5] * (stack.rounds - solved[(lr, stack.rounds)]))
                           for lr in stack.lrs])
            return x, torch.zeros_like(x, dtype=torch.bool)
        return score
    return types.SimpleNamespace(train=train, selection=selection), trained


def test_points_the_tuning_rounds_cannot_tell_apart_race_and_the_choice_is_made_among_them():
    """Three rates solve all 4 tuning rounds perfectly (a tie the smallest rate would win alone); they race on
    3 x 4 fresh rounds, where lr 0.3 solves the most: it is chosen, from the rows as from the run; the race's
    rows follow the tuning rounds'. The run's generator is not drawn from."""
    solved = {(0.01, 4): 1, (0.1, 4): 4, (0.3, 4): 4, (1.0, 4): 4, (0.1, 12): 6, (0.3, 12): 12, (1.0, 12): 9}
    script, trained = toy_script(solved)
    gen, tuning_only = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(2):                                         # what the tuning rounds draw: training, selection
        torch.rand(1, generator=tuning_only)
    arm = tuning.Arm("Naive", 1, Toy(), ToyNet())
    chosen, rows = tuning.tune(script, [arm], 4, 10, "solved", gen, None, lrs=(0.01, 0.1, 0.3, 1.0))
    assert trained == [(4, [0.01, 0.1, 0.3, 1.0]), (12, [0.1, 0.3, 1.0])]
    assert (chosen[("Naive", 1)].lr, chosen[("Naive", 1)].edge) == (0.3, False)
    assert torch.equal(gen.get_state(), tuning_only.get_state())     # the race drew from its own generator
    raced = [r for r in rows if r.round >= 4]
    assert len(rows) == 4 * 4 + 3 * 12 and sorted({r.round for r in raced}) == list(range(4, 16))
    table: dict = {}
    for r in rows:
        table.setdefault((r.get("lr"), r.get("momentum")), []).append(r.score)
    assert tuning.decide({p: np.array(v) for p, v in table.items()}, "solved", 1.0) == chosen[("Naive", 1)]
    assert tuning.choose({p: np.array(v[:4]) for p, v in table.items()}, "solved", 1.0).lr == 0.1   # without the race


def test_no_race_where_the_tuning_rounds_order_the_points():
    """One rate solves every round: no tie, no race; equal solved shares with different means are ordered by
    the mean and do not race either."""
    script, trained = toy_script({(0.1, 4): 3, (0.3, 4): 4})
    chosen, rows = tuning.tune(script, [tuning.Arm("Naive", 1, Toy(), ToyNet())], 4, 10, "solved",
                               torch.Generator().manual_seed(0), None, lrs=(0.1, 0.3))
    assert trained == [(4, [0.1, 0.3])] and chosen[("Naive", 1)].lr == 0.3 and len(rows) == 8
    close = {(0.1, 0.0): np.array([1.0, 0.9]), (0.3, 0.0): np.array([1.0, 0.8])}
    assert tuning.tied(close, "solved", 1.0) == [(0.1, 0.0)]


def test_a_race_draws_from_a_generator_of_its_own():
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    a, b = (torch.rand(3, generator=tuning.race_generator(gen, w)) for w in ("a", "b"))
    again = torch.rand(3, generator=tuning.race_generator(torch.Generator().manual_seed(3), "a"))
    assert torch.equal(a, again) and not torch.equal(a, b) and torch.equal(gen.get_state(), state)


def test_after_a_race_the_choice_and_its_firmness_are_among_the_points_that_raced():
    """lr 0.01 missed the tie by one round (3 of 4) and did not race; the raced points fell to 10 and 11 of 16:
    the choice stays among them (lr 0.3), though 0.01's 0.75 on its 4 rounds is higher, and firmness redraws
    only them."""
    solved = lambda k, n: np.array([1.0] * k + [0.5] * (n - k), np.float32)
    table = {(0.01, 0.0): solved(3, 4), (0.1, 0.0): solved(10, 16), (0.3, 0.0): solved(11, 16)}
    assert tuning.choose(table, "solved", 1.0).lr == 0.01
    assert (tuning.decide(table, "solved", 1.0).lr, tuning.decide(table, "solved", 1.0).edge) == (0.3, True)
    raced = {p: v for p, v in table.items() if len(v) == 16}
    assert tuning.firmness(table, "solved", 1.0) == tuning.firmness(raced, "solved", 1.0)
    assert set(tuning.picks(raced, "solved", 1.0)) == set(raced)
