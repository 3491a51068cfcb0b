"""interval_coverage.py on a synthetic case whose truth is known exactly.

Pattern "1" in sequences of 2 floats; the network max(x0, x1) - t says yes to a positive (its 1.0) and
to a negative with probability 1 - (t + 1/2)^2, so it solves a set of `PAIRS` pairs with probability
(t + 1/2)^(2 PAIRS): t is set to make that 1/2. Every round is a copy of that network, so on a shared
set all rounds pass or fail together and no interval ever covers 1/2.
"""
import math

import pytest
import torch

import interval_coverage as coverage
import data
import engine
from models import SingleFilterCNN

PATTERN = data.Pattern("1", seq_len=2)
PAIRS, ROUNDS, TRUTH = 50, 60, 0.5


def near_miss_copies(rounds: int = ROUNDS) -> engine.Stack:
    t = TRUTH ** (1 / (2 * PAIRS)) - data.NOISE
    net = SingleFilterCNN(torch.ones(1), -t)
    return engine.frozen_stack(net, {k: v.detach()[None].repeat(rounds, *[1] * v.dim()) for k, v in net.named_parameters()})


@pytest.mark.parametrize("method, low, high", [(coverage.new_draw, 0.9, 1.0), (coverage.old_draw, 0.0, 0.1)])
def test_new_intervals_hold_where_old_ones_fail(method, low, high):
    draw = method(near_miss_copies(), torch.Generator().manual_seed(0), PATTERN, PAIRS)
    covered, width = coverage.coverage(coverage.intervals(draw, 100), TRUTH)
    assert low <= covered <= high and 0 < width < 0.4


def test_truth_estimate_matches_the_exact_value():
    share, se = coverage.truth(near_miss_copies(8), torch.Generator().manual_seed(1), PATTERN, 20, 2000, PAIRS)
    assert 0 < se < 0.02 and abs(share - TRUTH) < 3 * se


def test_chance_without_error_is_the_hypergeometric_share():
    errors = torch.tensor([0, 1, 3, 6])
    exact = [math.comb(10 - e, 5) / math.comb(10, 5) for e in errors.tolist()]
    assert torch.allclose(coverage.chance_without_error(errors, 10, 5), torch.tensor(exact, dtype=torch.float64))
    assert torch.allclose(coverage.chance_without_error(errors, 5, 5), (errors == 0).double())
