"""The tuned ablation: the choice of learning rate sees only tuning rounds on the selection set,
annealed surrogates end on the hard operator, grid edges are reported."""
import dataclasses

import pytest
import torch

import cli
import data
import engine
import eval_ablations as A
import report
from models import NaiveBoolNet, NaiveCNN


def quick(experiment, **changes):
    s = dataclasses.replace(A.PROTOCOLS[experiment], **changes).check()
    return s.quick().check()


def run_job(experiment, s, seed=0):
    job = A.job(experiment, s)
    return job, job.run(torch.Generator().manual_seed(seed))


def test_the_choice_never_looks_at_the_validation_set_or_the_reported_rounds(monkeypatch):
    """Score every validation (the reported rounds) upside down: a choice that looked at them would change;
    the learning rates chosen on the selection set must not, while the reported scores do."""
    s = quick("bool", rounds=6, tuning_rounds=4, steps=60, max_width=2)
    job, rows = run_job("bool", s)
    honest = job.record["chosen_lr"]
    real = A.Data.score

    def upside_down(self, stack, on):
        scores, diverged = real(self, stack, on)
        return (1 - scores if on == "validation" else scores), diverged
    monkeypatch.setattr(A.Data, "score", upside_down)
    job2, rows2 = run_job("bool", s)
    assert job2.record["chosen_lr"] == honest
    assert [r.score for r in rows2["tuning_bool"]] == [r.score for r in rows["tuning_bool"]]
    assert [r.score for r in rows2["ablation_bool"]] != [r.score for r in rows["ablation_bool"]]
    assert len({lr for per_point in honest.values() for lr in per_point.values()}) > 1, "a choice must be made"


def test_the_chosen_rate_is_the_best_mean_on_the_selection_rows():
    s = quick("cnn", rounds=4, tuning_rounds=3, steps=20, max_filters=2)
    job, rows = run_job("cnn", s)
    for variant, chosen in job.record["chosen_lr"].items():
        for n, lr in chosen.items():
            means = {}
            for r in rows["tuning_cnn"]:
                name, rate = A.parse(r.model)
                if name == variant and r.sweep == n:
                    means.setdefault(rate, []).append(r.score)
            best = max(sum(v) / len(v) for v in means.values())
            assert sum(means[lr]) / len(means[lr]) == best and lr == min(r for r, v in means.items()
                                                                         if sum(v) / len(v) == best)


def test_choose_breaks_ties_towards_the_smaller_rate():
    assert A.choose({0.1: 0.9, 0.3: 0.95, 1.0: 0.95}) == 0.3


def test_a_grid_edge_is_reported():
    rows = [report.Row(A.grid_name("Adam", lr), 1, 6, r, score) for lr, score in ((0.001, 0.2), (10.0, 0.9), (1.0, 0.5))
            for r in range(3)]
    rows += [report.Row(A.grid_name("SGD", lr), 1, 6, r, score) for lr, score in ((0.1, 0.9), (1.0, 0.5)) for r in range(3)]
    text = A.tuning_notes("cnn")(rows, 1.0)
    assert "Adam                 1: 10*" in text and "SGD                  1: 0.1" in text and "0.1*" not in text


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


def test_tuned_study_flags_are_checked_and_quick_files_written(tmp_path, capsys):
    argv = ["--quick", "--rounds", 3, "--tuning-rounds", 2, "--steps", 10, "--max-filters", 1, "--max-width", 1,
            "--out", tmp_path]
    assert cli.main(A.arguments(), A.jobs, [str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert "learning rate chosen on the selection set" in printed and "SGD 1 - SGD (protocol lr) 1" in printed and "Adam 1 - SGD (protocol lr) 1" in printed
    for e in ("cnn", "bool"):
        for figure in A.figures(e, A.PROTOCOLS[e]):
            assert (tmp_path / f"{figure.name}.png").stat().st_size > 10_000
            assert report.read_csv(tmp_path / f"{figure.name}.csv", figure.models)
    assert cli.main(A.arguments(), A.jobs, ["--tuning-rounds", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--tuning-rounds must be a positive integer" in capsys.readouterr().err
