"""Benchmark: the stacked engine against the plain one-model-at-a-time loop, the full sweeps, and
the cost curve.

Everything printed is measured in this one run, on this machine:
  1. throughput of the original algorithm (one model, one step at a time, torch.optim.SGD) on a few
     rounds of experiment 1, against the engine on the full default stack of experiment 1;
  2. wall time and peak memory of each entry script at its defaults, end to end (a fresh process,
     imports and figure included), as the median of --repeats runs, against the original
     algorithm's time for each full sweep, extrapolated from its measured per-round cost;
  3. the cost curve: wall time and peak memory of eval_cnn.py against --rounds (one run each), and
     the fixed cost and marginal cost per round that a straight line through them gives.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import cli
import data
import engine
from models import NaiveBoolNet, NaiveCNN

ROOT = Path(__file__).resolve().parent


def plain_rounds(make, batch, evaluate, rounds: int, steps: int, lr: float, momentum: float) -> tuple[float, float]:
    """Seconds per round of the original algorithm, (training, evaluation): one model at a time."""
    train = evaluation = 0.0
    for r in range(rounds + 1):                      # round 0 warms up (lazy imports), not counted
        start = time.perf_counter()
        model = make()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
        for _ in range(steps):
            x, y, z = batch()
            if y is None:
                continue
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(x)[:, 0], y).backward()
            opt.step()
        middle = time.perf_counter()
        with torch.no_grad():
            evaluate(model)
        if r:
            train += middle - start
            evaluation += time.perf_counter() - middle
    return train / rounds, evaluation / rounds


def engine_steps_per_second(rounds: int, steps: int) -> tuple[float, int]:
    gen = torch.Generator().manual_seed(0)
    filters = range(1, 8)
    stack = engine.init_stack([NaiveCNN(n) for n in filters] + [NaiveCNN(n, frozen_conv=True) for n in filters],
                              rounds, gen)
    def batch(step: int):
        x, y = data.pattern_pairs((stack.networks,), gen)
        return (x,), y
    engine.train(stack, batch, 1, engine.make_optimizer("sgd", 0.1, 0.5))       # warm-up (lazy imports)
    start = time.perf_counter()
    engine.train(stack, batch, steps, engine.make_optimizer("sgd", 0.1, 0.5))
    return stack.networks * steps / (time.perf_counter() - start), stack.networks


class RunFailed(Exception):
    """A script that bench.py ran ended with an error: one line and status 1."""


def script_run(script: str, *argv: str) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one run of a script in a fresh process, writing into a
    folder of its own (TMPDIR/bench-*). Both are bench.py's: if it is stopped, interrupts.py's handler
    ends the run and removes the folder."""
    with interrupts.held():                          # registered before a signal is taken
        out = tempfile.mkdtemp(prefix="bench-")
        interrupts.TEMPORARY.add(out)
    try:
        with interrupts.held():
            start = time.perf_counter()
            run = subprocess.Popen([sys.executable, script, *argv, "--out", out, "--device", "cpu"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            interrupts.CHILDREN.add(run)
        with run.stderr:
            told = run.stderr.read().decode(errors="replace").strip()
        _, status, usage = os.wait4(run.pid, 0)      # reaped here for its peak memory (Popen.kill spares a reaped child)
        wall = time.perf_counter() - start
        run.returncode = os.waitstatus_to_exitcode(status)
        interrupts.CHILDREN.discard(run)
    finally:
        with interrupts.held():
            shutil.rmtree(out)
            interrupts.TEMPORARY.discard(out)
    if run.returncode:
        last = told.splitlines()[-1] if told else "(nothing on stderr)"
        raise RunFailed(f"{script} {' '.join(argv)} failed with status {run.returncode}: {last}")
    return wall, usage.ru_maxrss / 1024


def arguments() -> cli.Parser:
    p = cli.parser("bench.py", __doc__)
    p.add_argument("--repeats", type=int, default=3, help="default runs of each script (median reported)")
    p.add_argument("--plain-rounds", type=int, default=20, help="rounds of the plain loop to time")
    p.add_argument("--rounds", type=int, nargs="+", default=[500, 2000, 5000],
                   help="--rounds of eval_cnn.py for the cost curve")
    p.add_argument("--quick", action="store_true",
                   help="smoke run of a few seconds: each measure made here 50 times shorter, each script run with "
                        "--quick --steps 2 (the numbers mean little)")
    return p


def check(args) -> None:
    for name in ("repeats", "plain_rounds"):
        if not 1 <= getattr(args, name) <= 1000:
            raise cli.UsageError(f"{cli.flag(name)} must be a positive integer of at most 1000, got {getattr(args, name)}")
    if not all(1 <= r <= 100_000 for r in args.rounds):
        raise cli.UsageError(f"--rounds must be positive integers of at most 100000, got {args.rounds}")


def main(argv: list[str] | None = None) -> int:
    p = arguments()
    try:
        args = p.parse_args(argv)
        check(args)
        measure(args)
    except cli.UsageError as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"bench.py: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return 1
    return 0


def measure(args) -> None:
    print(f"device: cpu ({os.cpu_count()} cores visible), torch {torch.__version__}, threads {torch.get_num_threads()}")

    shorter = 50 if args.quick else 1
    gen = torch.Generator().manual_seed(0)
    x_val, y_val = data.pattern_validation_set(1000, gen)
    cnn_batch = lambda: (*data.pattern_pairs((), gen), None)
    cnn_eval = lambda m: engine.accuracy(m(x_val)[:, 0][None], y_val)
    train_cnn, eval_cnn = plain_rounds(lambda: NaiveCNN(4), cnn_batch, cnn_eval, args.plain_rounds, 100 // shorter, 0.1, 0.5)
    plain_rate = 100 // shorter / train_cnn
    rate, stacked = engine_steps_per_second(500 // shorter, 100 // shorter)
    print(f"\n1. training throughput, experiment 1 (model-steps per second, training only)")
    print(f"   plain loop, NaiveCNN(4), {args.plain_rounds} rounds:                  {plain_rate:10.0f}")
    print(f"   engine, Naive + RandomConv, 1..7 filters, {stacked} rounds:          {rate:10.0f}")
    print(f"   ratio engine / plain: {rate / plain_rate:.0f}x")

    def bool_batch():
        x, y = data.and_points((16,), gen)
        return (x, y if y.sum() >= data.MIN_POSITIVES else None, None)
    xb, yb = data.and_points((5000,), gen)
    train_bool, eval_bool = plain_rounds(lambda: NaiveBoolNet(11), bool_batch,
                                  lambda m: engine.macro_f1(m(xb)[:, 0][None], yb), args.plain_rounds, 500 // shorter, 0.1, 0.0)

    original = {"eval_cnn.py": (train_cnn + eval_cnn) * 7 * 500 * 3, "eval_bool.py": (train_bool + eval_bool) * 22 * 50 * 2}
    print(f"\n2. full default sweeps, end to end (median of {args.repeats} runs each, fresh processes)")
    print(f"   {'script':<14}{'wall s':>8}{'runs':>26}{'peak MiB':>10}{'plain loop s (extrapolated)':>30}{'speed-up':>10}")
    quick = ["--quick", "--steps", "2"] if args.quick else []
    for script in ("eval_cnn.py", "eval_bool.py"):
        runs = [script_run(script, *quick) for _ in range(args.repeats)]
        wall = statistics.median(w for w, _ in runs)
        peak = max(m for _, m in runs)
        print(f"   {script:<14}{wall:8.2f}{' '.join(f'{w:.2f}' for w, _ in runs):>26}{peak:10.0f}"
              f"{original[script]:30.0f}{original[script] / wall:9.0f}x")

    print("\n3. cost curve of eval_cnn.py (default sweep, one run per --rounds, fresh processes)")
    print(f"   {'rounds':>8}{'networks':>10}{'wall s':>9}{'peak MiB':>10}")
    curve = []
    for rounds in args.rounds:
        wall, peak = script_run("eval_cnn.py", "--rounds", str(rounds), *quick)
        curve.append((rounds, wall, peak))
        print(f"   {rounds:8d}{21 * rounds:10d}{wall:9.2f}{peak:10.0f}")
    if len(set(args.rounds)) > 1:
        r, w, m = (np.array(c, dtype=float) for c in zip(*curve))
        (dw, w0), (dm, m0) = np.polyfit(r, w, 1), np.polyfit(r, m, 1)
        print(f"   straight line: {w0:.2f} s + {1000 * dw:.2f} ms per round; {m0:.0f} MiB + {1000 * dm:.1f} MiB per 1000 rounds")


if __name__ == "__main__":
    sys.exit(main())
