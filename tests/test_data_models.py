import math

import pytest
import torch

import data
import engine
from hypernet import HyperBoolNet, HyperCNN
from models import NaiveBoolNet, NaiveCNN, hardcoded_bool_net, hardcoded_cnn, lse_pool


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_pattern_pairs_shapes_range_and_placement():
    x, y = data.pattern_pairs((3000,), gen())
    assert x.shape == (3000, 2, 1, 64) and y.shape == (3000, 2)
    assert torch.equal(y, torch.tensor([0.0, 1.0]).expand(3000, 2))
    neg, pos = x[:, 0, 0], x[:, 1, 0]
    assert neg.min() >= -0.5 and neg.max() < 0.5
    ones = pos == 1.0
    assert torch.equal(ones.sum(1), torch.full((3000,), 3))           # exactly three 1.0s ...
    starts = ones.float().argmax(1)
    assert starts.max() == 59 and starts.min() == 0 and starts.unique().numel() == 60   # i in 0..59
    for seq, i in zip(pos[:300], starts[:300]):
        assert seq[i] == seq[i + 1] == seq[i + 3] == 1.0 and abs(seq[i + 2]) < 0.5
    assert ((pos == 1.0) | (pos.abs() < 0.5)).all()


def test_validation_set_is_balanced():
    x, y = data.pattern_validation_set(1000, gen())
    assert x.shape == (2000, 1, 64) and y.sum() == 1000


def test_hardcoded_kernel_separates_fresh_pairs_perfectly():
    x, y = data.pattern_validation_set(10_000, gen(1))
    with torch.no_grad():
        logits = hardcoded_cnn()(x)[:, 0]
    assert engine.accuracy(logits[None], y).item() == 1.0
    assert logits[y == 1].min() == pytest.approx(3 - 2.5) and logits[y == 0].max() <= 1.5 - 2.5


def test_and_points_labels_and_skip_rule():
    x, y = data.and_points((20_000,), gen())
    assert torch.equal(y, ((x[:, 0] > 0) & (x[:, 1] > 0)).float())
    assert abs(y.mean().item() - 0.25) < 0.015
    _, yb = data.and_points((5000, 16), gen(2))
    skipped = (yb.sum(-1) < data.MIN_POSITIVES).float().mean().item()
    assert abs(skipped - 0.405) < 0.03                       # P(Binomial(16, 1/4) < 4) = 0.405


def test_drop_skipped_keeps_order_and_counts():
    active = torch.tensor([[True, False], [False, False], [True, True], [True, False]])
    lengths, order = data.drop_skipped(active)
    assert lengths.tolist() == [3, 1]
    assert order[:3, 0].tolist() == [0, 2, 3] and order[:1, 1].tolist() == [2]


def test_hardcoded_and_network_macro_f1_is_near_0948():
    x, y = data.and_points((1_000_000,), gen(3))
    with torch.no_grad():
        f1 = engine.macro_f1(hardcoded_bool_net()(x)[:, 0][None], y).item()
    assert abs(f1 - 0.9486) < 0.002


@pytest.mark.parametrize("module, count", [
    (NaiveCNN(1), 6), (NaiveCNN(7), 36), (NaiveCNN(3, frozen_conv=True), 4), (HyperCNN(), 5),
    (hardcoded_cnn(), 5), (NaiveBoolNet(1), 5), (NaiveBoolNet(22), 89), (HyperBoolNet(), 7), (hardcoded_bool_net(), 7)])
def test_final_sizes(module, count):
    assert module.final_size == count


@pytest.mark.parametrize("module, count", [
    (NaiveCNN(1), 6), (NaiveCNN(3, frozen_conv=True), 4), (HyperCNN(), 33), (NaiveBoolNet(22), 89), (HyperBoolNet(), 43)])
def test_trained_params(module, count):
    assert module.trained_params == count


def test_random_conv_filters_never_change():
    g = gen()
    stack = engine.init_stack([NaiveCNN(3, frozen_conv=True), NaiveCNN(3)], 4, g)
    conv0 = stack.params["conv.weight"].clone()
    dec0 = stack.params["decision.weight"].clone()

    def batch(step):
        x, y = data.pattern_pairs((8,), g)
        return (x,), y
    engine.train(stack, batch, 20, engine.make_optimizer("sgd", 0.1, 0.5))
    assert torch.equal(stack.params["conv.weight"][:4], conv0[:4])            # RandomConv: frozen
    assert not torch.equal(stack.params["conv.weight"][4:], conv0[4:])        # Naive: learns
    assert not torch.equal(stack.params["decision.weight"][:4], dec0[:4])     # decision layer learns


def test_stacked_init_follows_pytorch_default_init():
    """Same U(-1/sqrt(fan_in), 1/sqrt(fan_in)) law as nn.Conv1d / nn.Linear's own init; zeros copied."""
    stack = engine.init_stack([NaiveCNN(5)], 4000, gen())
    torch.manual_seed(0)
    ref = [NaiveCNN(5) for _ in range(400)]
    for name in ("conv.weight", "decision.weight", "decision.bias"):
        ours = stack.params[name].flatten()
        theirs = torch.cat([dict(m.named_parameters())[name].detach().flatten() for m in ref])
        bound = theirs.abs().max().item()
        assert ours.abs().max() <= bound * 1.02 and ours.abs().max() >= bound * 0.95
        assert abs(ours.std() - theirs.std()) < 0.05 * theirs.std() and abs(ours.mean()) < 0.02
    h = engine.init_stack([HyperCNN()], 3, gen())
    assert torch.equal(h.params["bias"], torch.zeros(3, 1))
    assert h.params["generator.0.weight"].abs().max() <= 1 / math.sqrt(2)


def test_hypernetworks_default_to_z_zero():
    g = gen(5)
    x, _ = data.pattern_validation_set(20, g)
    xb, _ = data.and_points((30,), g)
    for net, inputs in ((HyperCNN(), x), (HyperBoolNet(), xb)):
        torch.testing.assert_close(net(inputs), net(inputs, torch.zeros(2)))
        params = {k: v.detach()[None] for k, v in net.named_parameters()}
        torch.testing.assert_close(net.stacked_forward(params, inputs), net.stacked_forward(params, inputs, torch.zeros(1, 2)))


def test_generated_networks_equal_the_hypernetwork_at_that_latent():
    g = gen(7)
    z = data.latents((), g)
    x, _ = data.pattern_validation_set(20, g)
    h = HyperCNN()
    torch.testing.assert_close(h.generate(z)(x), h(x, z))
    hb = HyperBoolNet()
    xb, _ = data.and_points((30,), g)
    torch.testing.assert_close(hb.generate(z)(xb), hb(xb, z))


def test_lse_pool_tends_to_max_as_temperature_falls():
    x = torch.randn(50, 3, 61)
    gaps = [(lse_pool(x, t) - x.amax(-1)).abs().max().item() for t in (1.0, 0.1, 0.01, 0.001)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01
    assert all(g <= t * math.log(61) + 1e-5 for g, t in zip(gaps, (1.0, 0.1, 0.01, 0.001)))


def test_surrogates_train_but_evaluation_uses_the_hard_operators():
    g = gen(8)
    x, _ = data.pattern_validation_set(30, g)
    lse, hard = NaiveCNN(2, pool="lse", temperature=0.5), NaiveCNN(2)
    hard.load_state_dict(lse.state_dict())
    assert not torch.allclose(lse.train()(x), hard(x))
    torch.testing.assert_close(lse.eval()(x), hard.eval()(x))
    params = {k: v.detach()[None] for k, v in lse.named_parameters()}
    with torch.no_grad():
        torch.testing.assert_close(lse.stacked_forward(params, x)[0], hard(x)[:, 0])
    xb, _ = data.and_points((100,), g)
    for act in ("softplus", "leaky"):
        soft, relu = NaiveBoolNet(3, activation=act), NaiveBoolNet(3)
        relu.load_state_dict(soft.state_dict())
        assert not torch.allclose(soft.train()(xb), relu(xb))
        torch.testing.assert_close(soft.eval()(xb), relu(xb))


def test_engine_evaluation_matches_module_forward_and_chunks_do_not_matter():
    g = gen(9)
    stack = engine.init_stack([NaiveCNN(1), NaiveCNN(4)], 5, g)
    x, y = data.pattern_validation_set(100, g)
    whole, _ = engine.evaluate(stack, lambda a, b: ((x,), y), engine.accuracy, shared=True, chunk=64)
    small, _ = engine.evaluate(stack, lambda a, b: ((x,), y), engine.accuracy, shared=True, chunk=2)
    assert torch.equal(whole, small)
    for r in range(stack.networks):
        m = stack.module(r).eval()
        assert whole[r].item() == pytest.approx(engine.accuracy(m(x)[:, 0][None], y).item())


def test_macro_f1_against_a_hand_worked_example():
    # truth 1 1 1 0 0 0 0 0, predicted 1 1 0 1 0 0 0 0: class 1 tp=2 fp=1 fn=1 -> F1 2/3;
    # class 0 tp=4 fp=1 fn=1 -> F1 0.8; macro = (2/3 + 0.8) / 2
    y = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0.0])
    logits = torch.tensor([[2, 1, -1, 3, -2, -1, -5, -0.5]])
    assert engine.macro_f1(logits, y).item() == pytest.approx((2 / 3 + 0.8) / 2)
    assert engine.accuracy(logits, y).item() == pytest.approx(6 / 8)


def test_non_finite_logits_count_as_wrong():
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    logits = torch.tensor([[float("nan"), float("nan"), float("-inf"), float("inf")]])
    assert engine.accuracy(logits, y).item() == 0.0
    assert engine.macro_f1(logits, y).item() == 0.0
