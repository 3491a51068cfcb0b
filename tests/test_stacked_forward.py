"""Every hand-written `stacked_forward` against the reference path, `torch.func.vmap` of the plain
`forward` (engine.vmap_forward): groups of different sizes padded into one stack, train and eval
mode, one batch per round or one batch shared by all rounds; logits and trained gradients."""
import pytest
import torch

import data
import engine
from hypernet import HyperBoolNet, HyperCNN, training_inputs
from models import NaiveBoolNet, NaiveCNN, SingleFilterCNN, TwoLayerBoolNet

ROUNDS = 3
BATCH = 5


def sequences(shape, gen):
    return data.noise((*shape, BATCH), gen)                # (*shape, BATCH, 1, 64)


def points(shape, gen):
    return data.and_points((*shape, BATCH), gen)[0]         # (*shape, BATCH, 2)


FAMILIES = {
    "Naive": (lambda: [NaiveCNN(1), NaiveCNN(3), NaiveCNN(5)], sequences),
    "RandomConv": (lambda: [NaiveCNN(2, frozen_conv=True), NaiveCNN(4, frozen_conv=True)], sequences),
    "Naive lse": (lambda: [NaiveCNN(1, pool="lse", temperature=0.3), NaiveCNN(4, pool="lse", temperature=0.3)], sequences),
    "SingleFilterCNN": (lambda: [SingleFilterCNN(torch.randn(4), 0.1)], sequences),
    "HyperCNN": (lambda: [HyperCNN(), HyperCNN()], sequences),
    "NaiveBoolNet": (lambda: [NaiveBoolNet(1), NaiveBoolNet(4), NaiveBoolNet(7)], points),
    "NaiveBoolNet softplus": (lambda: [NaiveBoolNet(2, activation="softplus"), NaiveBoolNet(5, activation="softplus")],
                              points),
    "NaiveBoolNet leaky": (lambda: [NaiveBoolNet(3, activation="leaky"), NaiveBoolNet(1, activation="leaky")], points),
    "TwoLayerBoolNet": (lambda: [TwoLayerBoolNet(torch.randn(2, 2), torch.randn(2), 0.3)], points),
    "HyperBoolNet": (lambda: [HyperBoolNet(), HyperBoolNet()], points),
}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shared", [False, True], ids=["per-round", "shared"])
@pytest.mark.parametrize("family", FAMILIES)
def test_stacked_forward_matches_vmap_of_forward(family, shared, mode):
    make, draw = FAMILIES[family]
    gen = torch.Generator().manual_seed(sum(map(ord, family)))
    templates = make()
    stack = engine.init_stack(templates, ROUNDS, gen)
    for t in templates:
        t.train(mode == "train")
    x = draw(() if shared else (stack.networks,), gen)
    z = data.latents((stack.networks,), gen)
    inputs = training_inputs(templates[0], x, z) if mode == "train" else (x,)

    fast_params = {k: v.clone().requires_grad_() for k, v in stack.params.items()}
    fast = templates[0].stacked_forward(fast_params, *inputs)
    ref_params = {k: v.clone().requires_grad_() for k, v in stack.params.items()}
    ref = torch.cat([engine.vmap_forward(g, stack.group_params(g, params=ref_params),
                                         tuple(i if shared and n == 0 else i[g.start:g.stop] for n, i in enumerate(inputs)),
                                         shared=shared) for g in stack.groups])
    assert fast.shape == ref.shape == (stack.networks, BATCH)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)

    w = torch.randn(fast.shape, generator=gen)
    fast_grads = torch.autograd.grad((fast * w).sum(), list(fast_params.values()))
    ref_grads = torch.autograd.grad((ref * w).sum(), list(ref_params.values()), allow_unused=True)
    for name, g, h in zip(stack.params, fast_grads, ref_grads):
        h = torch.zeros_like(g) if h is None else h
        trained = stack.masks[name]                           # padded and frozen entries never move
        torch.testing.assert_close(g * trained, h * trained, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")


def test_the_groups_of_a_stack_are_padded():
    """The families above do put networks of different sizes into one padded stack: every stack the test above
    builds (engine.init_stack, as it does) that holds templates of different sizes has entries beyond some
    group's own shapes, never trained and zero; each group trains exactly its own network's parameters."""
    padded, different = set(), set()
    for family, (make, _) in FAMILIES.items():
        templates = make()
        stack = engine.init_stack(templates, ROUNDS, torch.Generator().manual_seed(0))
        if len({sum(p.numel() for p in t.parameters()) for t in templates}) > 1:
            different.add(family)
        for g in stack.groups:
            own = dict(g.template.named_parameters())
            for name, mask in stack.masks.items():
                inside = torch.zeros_like(mask[g.start:g.stop], dtype=torch.bool)
                inside[(slice(None), *(slice(0, n) for n in own[name].shape))] = True
                assert not mask[g.start:g.stop][~inside].any() and not stack.params[name][g.start:g.stop][~inside].any()
                assert mask[g.start:g.stop][inside].eq(float(own[name].requires_grad)).all(), (family, name)
                if (~inside).any():
                    padded.add(family)
    assert different and padded == different


def test_init_stack_refuses_templates_with_other_settings():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="one setting"):
        engine.init_stack([NaiveCNN(2), NaiveCNN(3, pool="lse")], 2, gen)
    with pytest.raises(ValueError, match="one setting"):
        engine.init_stack([NaiveBoolNet(2, activation="softplus"), NaiveBoolNet(2)], 2, gen)
    with pytest.raises(ValueError, match="one class"):
        engine.init_stack([NaiveBoolNet(2), HyperBoolNet()], 2, gen)
    mixed = engine.init_stack([NaiveCNN(2), NaiveCNN(3, frozen_conv=True)], 2, gen)    # frozen is a mask, not a setting
    conv = mixed.masks["conv.weight"]
    assert len(mixed.groups) == 2 and conv[:2, :2].all() and not conv[2:].any()


@pytest.mark.parametrize("filters", [1, 3, 7])
def test_blocked_max_conv_is_the_whole_tensors_max_bit_for_bit(filters, monkeypatch):
    """The no-autograd per-round path for few filters (blocks of the batch, max by halves) gives exactly
    the max of the whole (R, B, F, positions) correlation, whatever the block."""
    import models
    gen = torch.Generator().manual_seed(filters)
    x, w = torch.randn(3, 50, 64, generator=gen), torch.randn(3, filters, 4, generator=gen)
    whole = models._conv_per_round(x, w).amax(-1)
    for block in (1, 7, 2 ** 20):
        monkeypatch.setattr(models, "BLOCK_ELEMENTS", block * 3 * filters * 61)
        assert torch.equal(models._max_conv_blocked(x, w), whole)
    with torch.no_grad():
        assert torch.equal(models.pool_conv(x, w), whole)
    odd = torch.randn(2, 5, 61, generator=gen)
    assert all(torch.equal(models._halving_max(odd[..., :n]), odd[..., :n].amax(-1)) for n in range(1, 62))


def test_the_shared_path_in_blocks_of_the_batch_is_the_whole_batch_bit_for_bit(monkeypatch):
    """_max_conv_shared takes a large shared batch (a test set) a cache-sized block at a time: the same sums."""
    import models
    gen = torch.Generator().manual_seed(4)
    x, w = torch.randn(300, 64, generator=gen), torch.randn(5, 3, 4, generator=gen)
    whole = models._max_conv_shared(x, w)
    monkeypatch.setattr(models, "RUNNING_ELEMENTS", 7 * 5 * 3)              # blocks of 6-7 sequences
    assert torch.equal(models._max_conv_shared(x, w), whole)
    assert torch.equal(whole, models._conv_per_round(x.expand(5, *x.shape), w).amax(-1))


@pytest.mark.parametrize("filters", [8, 28])
def test_the_running_max_per_round_in_blocks_of_the_batch_is_the_whole_batch_bit_for_bit(filters, monkeypatch):
    """_max_conv_per_round (many filters) takes each round's batch a cache-sized block at a time: the same
    products and maxima as the whole batch at once."""
    import models
    gen = torch.Generator().manual_seed(filters)
    x, w = torch.rand(3, 601, 64, generator=gen) - 0.5, torch.randn(3, filters, 4, generator=gen)
    monkeypatch.setattr(models, "RUNNING_ELEMENTS", 10 ** 9)               # one block
    whole = models._max_conv_per_round(x, w)
    monkeypatch.setattr(models, "RUNNING_ELEMENTS", 59 * 3 * filters)      # 11 blocks of 54-55 sequences
    assert [len(b[0]) for b in models.running_blocks(x, 1, 3 * filters)] == [55] * 7 + [54] * 4
    assert torch.equal(models._max_conv_per_round(x, w), whole)
    assert torch.allclose(whole, models._conv_per_round(x, w).amax(-1), atol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("activation", ["relu", "leaky", "softplus"])
def test_naive_bool_nets_without_autograd_in_blocks_of_the_batch_are_the_whole_batch_bit_for_bit(shared, activation,
                                                                                                  monkeypatch):
    """NaiveBoolNet.stacked_forward takes a large batch (a test set) a cache-sized block at a time when no
    gradient is needed, its hidden layer unit-major (ReLU, leaky ReLU): the same logits as the whole batch at
    once, batch-major (the path training takes), at every width (in training mode too: softplus)."""
    import models
    gen = torch.Generator().manual_seed(9)
    monkeypatch.setattr(models, "BLOCK_ELEMENTS", 7 * 3 * 6)                # blocks of 7 points at width 6
    for width in (1, 2, 3, 6, 22):
        for training in (False, True):
            net = NaiveBoolNet(width, activation=activation).train(training)
            params = {k: torch.randn(3, *v.shape, generator=gen) for k, v in net.named_parameters()}
            x = torch.randn(*(() if shared else (3,)), 301, 2, generator=gen)
            whole = net.stacked_forward(params, x)                      # autograd on: one pass, no blocks
            with torch.no_grad():
                blocked = net.stacked_forward(params, x)
            assert blocked.shape == (3, 301) and torch.equal(blocked, whole.detach())
