"""What both entry scripts share: flags, their checks, the device, and the run -> files -> table flow.

Bad input ends with one line on stderr and exit status 2, never a traceback.
"""
import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import engine
import report


class UsageError(Exception):
    """Bad input, reported as one line and exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def parser(description: str, *, rounds: int, steps: int, lr: float, momentum: float, solved_at: float) -> Parser:
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=rounds, help="independently initialised models per sweep point")
    p.add_argument("--steps", type=int, default=steps, help="training steps per model")
    p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--momentum", type=float, default=momentum, help="momentum (sgd, rmsprop)")
    p.add_argument("--optimizer", choices=engine.OPTIMIZERS, default="sgd", help="torch.optim optimizer")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw of the run")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--out", type=Path, default=Path("plots"), help="folder of the figure, CSV and JSON")
    p.add_argument("--solved-at", type=float, default=solved_at, help="a round is solved when its score is at least this")
    p.add_argument("--quick", action="store_true", help="smoke run of a few seconds: 10 rounds, at most 3 sweep points")
    p.add_argument("--plot-only", action="store_true", help="redraw figure and table from the CSV in --out, no training")
    return p


def help_text(shown: bool) -> Callable[[str], str]:
    """The help of a flag as given, or hidden from --help (a flag accepted for another experiment's sake)."""
    return (lambda text: text) if shown else (lambda text: argparse.SUPPRESS)


def study_parser(prog: str, script, others: list) -> Parser:
    """`script.arguments()` renamed `prog`, also accepting (hidden) the own flags of the `others` scripts,
    so that one command line serves a study of several experiments."""
    p = script.arguments()
    p.prog = prog
    own = vars(p.parse_args([]))
    epilog = []
    for other in others:
        other.add_flags(p, shown=False)
        theirs = vars(other.arguments().parse_args([]))
        flags = [f"--{k.replace('_', '-')} {v}" for k, v in theirs.items() if k not in own or own[k] != v]
        epilog.append(f"Then: {other.__doc__.splitlines()[0]} Its own defaults: {', '.join(flags)}.")
    p.epilog = " ".join(epilog + ["A flag given applies to every experiment."])
    return p


def check_range(args: argparse.Namespace, low: str, high: str) -> range:
    """The inclusive sweep range named by two flags, checked."""
    lo, hi = getattr(args, low), getattr(args, high)
    if lo < 1 or hi < 1:
        raise UsageError(f"--{low.replace('_', '-')} and --{high.replace('_', '-')} must be at least 1")
    if lo > hi:
        raise UsageError(f"--{low.replace('_', '-')} ({lo}) is above --{high.replace('_', '-')} ({hi})")
    top = min(hi, lo + 2) if args.quick else hi
    return range(lo, top + 1)


def check(args: argparse.Namespace) -> None:
    if args.rounds < 1:
        raise UsageError(f"--rounds must be a positive integer, got {args.rounds}")
    if args.steps < 1:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive finite number, got {args.lr}")
    if not 0 <= args.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {args.momentum}")
    if not 0 <= args.solved_at <= 1:
        raise UsageError(f"--solved-at must be in [0, 1], got {args.solved_at}")
    if args.quick:
        args.rounds = min(args.rounds, 10)


def device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here")
        return torch.device("cuda")
    raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")


def writable_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def optimizer(args: argparse.Namespace):
    return engine.make_optimizer(args.optimizer, args.lr, args.momentum)


def rows_of(stack: engine.Stack, labels: list[tuple[str, int]], scores: torch.Tensor) -> list[report.Row]:
    """One row per round; labels[i] = (model, sweep value) of the stack's i-th group."""
    scores = scores.tolist()
    return [report.Row(model, sweep, group.template.n_params, r - group.start, scores[r])
            for group, (model, sweep) in zip(stack.groups, labels) for r in range(group.start, group.stop)]


@torch.no_grad()
def score_module(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, score) -> float:
    """Score one plain module (a hard-coded network) with the metric the stacks are scored with."""
    return score(net.eval()(x, None)[:, 0][None], y).item()


Notes = Callable[[list[report.Row], float], str]        # (rows, --solved-at) -> lines printed below the table


def main(p: Parser, fig: report.Figure, run: Callable[[argparse.Namespace, torch.Generator], list[report.Row]],
         argv: list[str] | None = None, notes: Notes | None = None) -> int:
    """Parse and check flags, run (or reload) the experiment, write its files, print its table (and notes)."""
    try:
        args = p.parse_args(argv)
        check(args)
        dev = device(args.device)
        out = writable_folder(args.out)
        csv_path, json_path, png_path = (out / f"{fig.name}{ext}" for ext in (".csv", ".json", ".png"))
        if args.plot_only:
            rows = report.read_csv(csv_path, fig.models)
        else:
            start = time.perf_counter()
            gen = torch.Generator(dev).manual_seed(args.seed)
            rows = run(args, gen)
            settings = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                        "device_used": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "train_eval_seconds": round(time.perf_counter() - start, 3),
                        "command": " ".join([os.path.basename(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)])}
        summaries = report.summarize(rows, args.solved_at)
        report.plot(summaries, fig, png_path)
        written = [png_path]
        if not args.plot_only:
            report.write_csv(csv_path, rows)
            report.write_json(json_path, settings)
            written += [csv_path, json_path]
    except (UsageError, report.DataError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; no file is left half-written", file=sys.stderr)
        return 130
    print(report.table(summaries))
    if notes is not None:
        print(notes(rows, args.solved_at))
    print("wrote " + ", ".join(map(str, written)))
    return 0


def main_each(studies: list[tuple[Parser, report.Figure, Callable, Notes | None]], argv: list[str] | None = None) -> int:
    """`main` for each (parser, figure, run, notes) on one command line, in order; stops at the first failure."""
    for p, fig, run, notes in studies:
        status = main(p, fig, run, argv, notes)
        if status:
            return status
    return 0
