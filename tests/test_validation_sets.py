"""Per-round validation sets, the stratified test set and misses by start (data.py)."""
import torch

import data
import engine
from models import NaiveCNN, hardcoded_cnn


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_per_round_sets_differ_between_rounds_and_follow_the_seed_whatever_the_chunks():
    sets = data.per_round_validation(5, 30, gen(3))
    (x,), y = sets(0, 5)
    assert x.shape == (5, 60, 1, 64) and torch.equal(y, torch.tensor([0.0, 1.0]).repeat(30))
    assert all(not torch.equal(x[i], x[j]) for i in range(5) for j in range(i))
    later, first = data.per_round_validation(5, 30, gen(3)), data.per_round_validation(5, 30, gen(3))
    tail, head = later(2, 5)[0][0], first(0, 2)[0][0]
    assert torch.equal(torch.cat([head, tail]), x)                   # chunks in any order: the same sets
    assert not torch.equal(data.per_round_validation(5, 30, gen(4))(0, 5)[0][0], x)


def test_each_round_set_is_a_protocol_validation_set():
    (x,), y = data.per_round_validation(2, 500, gen())(0, 2)
    neg, pos = x[:, 0::2, 0], x[:, 1::2, 0]
    assert neg.min() >= -0.5 and neg.max() < 0.5
    assert torch.equal((pos == 1.0).sum(-1), torch.full((2, 500), 3))


def test_engine_scores_every_round_on_its_own_set():
    net = hardcoded_cnn()
    stack = engine.frozen_stack(net, {k: v.detach()[None].repeat(6, *[1] * v.dim()) for k, v in net.named_parameters()})
    with torch.no_grad():
        stack.params["bias"][3] = -1.2          # round 3 answers yes to noise now and then
    sets = data.per_round_validation(6, 200, gen(1))
    scores, _ = engine.evaluate(stack, sets, engine.accuracy, chunk=4)
    (x,), y = sets(0, 6)
    with torch.no_grad():
        own = torch.stack([engine.accuracy(stack.module(r)(x[r])[:, 0][None], y)[0] for r in range(6)])
    assert torch.equal(scores, own) and scores[3] < 1 and (scores[torch.arange(6) != 3] == 1).all()


def test_stratified_set_puts_the_pattern_at_every_start_equally_often():
    pattern = data.Pattern("1101", 64)
    x, y, start = data.stratified_test_set(7, gen(), pattern)
    n = 7 * (pattern.last_start + 1)
    assert x.shape == (2 * n, 1, 64) and torch.equal(y, (start >= 0).float()) and y.sum() == n
    assert torch.equal(torch.bincount(start[start >= 0]), torch.full((pattern.last_start + 1,), 7))
    assert start.max() + pattern.size <= pattern.seq_len          # a filter without padding sees every match
    seqs = x[:, 0]
    expected = torch.zeros_like(seqs, dtype=torch.bool)
    for i in torch.nonzero(start >= 0)[:, 0]:
        expected[i, start[i] + torch.tensor(pattern.offsets)] = True
    assert torch.equal(seqs == 1.0, expected)                     # 1.0 exactly there, noise elsewhere
    assert seqs[~expected].abs().max() < 0.5


def misses(net: torch.nn.Module, per_start: int = 5):
    x, _, start = data.stratified_test_set(per_start, gen(2))
    with torch.no_grad():
        logits = net(x)[:, 0][None]
    return data.misses_by_start(logits, start, data.PROTOCOL_PATTERN.last_start + 1)


def test_a_network_blind_to_start_0_misses_exactly_start_0():
    net = NaiveCNN(1, kernel_size=5)                 # windows 0..59 see the pattern at starts 1..60
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor([[[0.0, 1.0, 1.0, 0.0, 1.0]]]))
        net.decision.weight.fill_(1.0)
        net.decision.bias.fill_(-2.0)
    by_start, false_pos = misses(net)
    assert by_start.shape == (1, 60) and by_start[0, 0] == 5 and by_start[0, 1:].sum() == 0 and false_pos[0] == 0
    assert misses(hardcoded_cnn())[0].sum() == 0


def test_false_positives_and_non_finite_logits():
    start = torch.tensor([-1, 0, -1, 1])
    logits = torch.tensor([[1.0, 1.0, -1.0, -1.0], [float("nan")] * 4, [-1.0, -1.0, -1.0, 1.0]])
    by_start, false_pos = data.misses_by_start(logits, start, 2)
    assert torch.equal(by_start, torch.tensor([[0, 1], [1, 1], [1, 0]]))
    assert torch.equal(false_pos, torch.tensor([1, 2, 0]))


def test_groups_that_meet_the_same_rounds_draw_their_sets_once(monkeypatch):
    """engine.evaluate goes chunk by chunk across groups; per_round_validation holds the last chunk's sets,
    so two groups of the same rounds draw each set once, and each still meets round i % rounds's set."""
    drawn, made = [], []
    sets = data.per_round_validation(4, 20, gen(2))
    counted = lambda a, b: (drawn.append((a, b)), sets(a, b))[1]
    stack = engine.init_stack([NaiveCNN(1), NaiveCNN(3)], 4, gen(5))
    draw = data.pattern_validation_set
    monkeypatch.setattr(data, "pattern_validation_set", lambda *a: (made.append(1), draw(*a))[1])
    scores, _ = engine.evaluate(stack, counted, engine.accuracy, chunk=2)
    monkeypatch.undo()
    assert drawn == [(0, 2), (4, 6), (2, 4), (6, 8)]              # chunk-major: group 1, group 2, next chunk
    assert len(made) == 4                                         # four rounds, four sets, for two groups
    fresh = data.per_round_validation(4, 20, gen(2))
    assert all(torch.equal(fresh(a % 4, a % 4 + 2)[0][0], sets(a, b)[0][0]) for a, b in drawn)
    alone = [engine.evaluate(engine.init_stack([t], 4, gen(5)), data.per_round_validation(4, 20, gen(2)),
                             engine.accuracy, chunk=3)[0] for t in (NaiveCNN(1),)]
    assert torch.equal(scores[:4], alone[0])                      # the chunking and order change nothing


def test_groups_given_the_same_sets_are_scored_together_as_each_alone():
    """NaiveCNN groups of a stack that meet the same per-round sets are scored in one pass over all their
    filters (NaiveCNN.stacked_forward_together); scores and diverged flags are those of each group alone."""
    templates = [NaiveCNN(1), NaiveCNN(3), NaiveCNN(7), NaiveCNN(2, frozen_conv=True), NaiveCNN(2, kernel_size=5)]
    stack = engine.init_stack(templates, 6, gen(7))
    with torch.no_grad():
        stack.params["decision.bias"][7] = float("nan")                 # one diverged round of group 2
    together = engine.evaluate(stack, data.per_round_validation(6, 40, gen(8)), engine.accuracy, chunk=4)
    alone = [engine.evaluate(engine.Stack(stack.params, stack.masks, [g]), data.per_round_validation(6, 40, gen(8)),
                             engine.accuracy, chunk=4) for g in stack.groups]
    for g, (scores, diverged) in zip(stack.groups, alone):
        assert torch.allclose(together[0][g.start:g.stop], scores[g.start:g.stop], atol=1e-6)
        assert torch.equal(together[1][g.start:g.stop], diverged[g.start:g.stop])
    assert together[1][7] and together[1].sum() == 1
