"""Flags, their checks, where results go, and the run -> files -> table flow of every script.

An experiment declares its settings once, as a frozen dataclass whose fields carry their help and
their valid range (`setting`); a script's flags are made from those fields, and a study builds its
variants as copies of the settings with fields changed. Every setting of every experiment of a
script is checked before anything trains. Bad input ends with one line on stderr and exit status
2, never a traceback.
"""
import argparse
import dataclasses
import errno
import hashlib
import json
import math
import os
import pickle
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch

import engine
import interrupts
import report
from models import SCHEDULES

COMMITTED = Path("plots")         # the results of the protocol defaults, quoted by the README
RUNS = Path("runs")               # every other run: one folder per set of settings (git-ignored)
MAX_SEED = 2 ** 63 - 1
LARGEST = 10 ** 9                 # no count of this project comes near (rounds, steps, a sweep bound, a set size)
MAX_LR = 1e30                     # beyond this, float32 updates overflow before any divergence shows


class UsageError(Exception):
    """Bad input, reported as one line and exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Rule:
    """What a setting means and which values it takes."""
    help: str
    valid: Callable[[Any], bool] = lambda v: True
    expect: str = ""
    choices: tuple | None = None


def setting(help: str, valid: Callable[[Any], bool] = lambda v: True, expect: str = "",
            choices: tuple | None = None, **kw) -> Any:
    """A settings field with its help text and its valid values (`expect` says which, in words)."""
    return field(metadata={"rule": Rule(help, valid, expect, choices)}, **kw)


def positive(v: int) -> bool:
    return v >= 1


def within(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Callable[[float], bool]:
    return lambda v: (math.isfinite(v) and (low < v if open_low else low <= v) and (v < high if open_high else v <= high))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class Checked:
    """Settings whose fields declare their valid values (`setting`), all checked by `check`."""

    def check(self) -> "Checked":
        """Every field in its range (else UsageError); returns self."""
        for f in fields(self):
            rule, value = f.metadata["rule"], getattr(self, f.name)
            if type(value) is int and abs(value) > LARGEST:
                raise UsageError(f"{flag(f.name)} must be at most {LARGEST:,} in size, got {value}"[:200])
            if rule.choices is not None and value not in rule.choices:
                raise UsageError(f"{flag(f.name)} must be one of {', '.join(rule.choices)}, got {value!r}")
            if not rule.valid(value):
                raise UsageError(f"{flag(f.name)} must be {rule.expect}, got {value}")
        return self


@dataclass(frozen=True, kw_only=True)
class Settings(Checked):
    """The protocol's training and scoring settings that both experiments have (values: each its own)."""
    rounds: int = setting("independently initialised models per sweep point", positive, "a positive integer")
    steps: int = setting("training steps per model", positive, "a positive integer")
    lr: float = setting("learning rate", within(0, MAX_LR, open_low=True),
                        f"a positive finite number (at most {MAX_LR:g})")
    momentum: float = setting("momentum (sgd, rmsprop)", within(0, 1, open_high=True), "in [0, 1)")
    optimizer: str = setting("the update rule of this torch.optim optimizer", choices=engine.OPTIMIZERS, default="sgd")
    schedule: str = setting("temperature of the training surrogate: fixed, or linear down to 0 (the hard operator) "
                            "at each round's last step", choices=SCHEDULES, default="fixed")
    solved_at: float = setting("a round is solved when its score is at least this", within(0, 1), "in [0, 1]")

    def quick(self) -> "Settings":
        """The settings of a smoke run of a few seconds."""
        return dataclasses.replace(self, rounds=min(self.rounds, 10))

    def memory_bytes(self) -> int:
        """About how much memory the largest step of the run takes (to refuse what cannot fit)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class StudySettings(Checked):
    """A study's own settings, kept beside an experiment's (never mixed into them)."""

    def check_with(self, base: Settings) -> "StudySettings":
        """Every field in its range and every rule that ties them to the experiment's settings."""
        return self.check()

    def quick(self) -> "StudySettings":
        return self

    def memory_bytes(self, base: Settings) -> int:
        """About how much memory the study's largest step takes, given the experiment's settings."""
        return base.memory_bytes()


def sweep_range(low: int, high: int, low_name: str, high_name: str) -> range:
    if low > high:
        raise UsageError(f"{flag(low_name)} ({low}) is above {flag(high_name)} ({high})")
    return range(low, high + 1)


def add_settings(p: Parser, defaults: Settings, names: list[str] | None = None) -> None:
    """One flag per field of `defaults` (or of `names`), defaulting to its value."""
    for f in fields(defaults):
        if names is None or f.name in names:
            rule = f.metadata["rule"]
            p.add_argument(flag(f.name), type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name),
                           choices=rule.choices, help=rule.help)


def add_overrides(p: Parser, defaults: dict[str, Checked], names: list[str]) -> None:
    """One flag per name for a study of several experiments: given, it applies to every experiment
    that has that setting; not given, each keeps its own default (listed in the help)."""
    for name in names:
        having = {e: s for e, s in defaults.items() if name in {f.name for f in fields(s)}}
        first = next(iter(having.values()))
        rule = next(f for f in fields(first) if f.name == name).metadata["rule"]
        values = ", ".join(f"{getattr(s, name)} ({e})" for e, s in having.items())
        p.add_argument(flag(name), type=type(getattr(first, name)), default=None, choices=rule.choices,
                       help=f"{rule.help} (default: {values})")


def overridden(defaults: Checked, args: argparse.Namespace) -> Checked:
    """`defaults` with every field that the command line gave (a study's overrides) replaced."""
    given = {f.name: getattr(args, f.name) for f in fields(defaults) if getattr(args, f.name, None) is not None}
    return dataclasses.replace(defaults, **given)


# ----------------------------------------------------------------------------- a script's run

def add_run_flags(p: Parser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw of the run")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--out", type=folder_path, default=None,
                   help=f"folder of the figure, CSV and JSON (default: {COMMITTED}/ at the protocol defaults, "
                        f"else a folder of its own under {RUNS}/)")
    p.add_argument("--quick", action="store_true", help="smoke run of a few seconds: at most 10 rounds and 3 sweep points")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw figure and table from the CSV of the same run, no training")


def folder_path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty name")
    return Path(text)


def parser(prog: str, doc: str) -> Parser:
    """A parser whose --help is the script's docstring and shows every default."""
    return Parser(prog=prog, description=doc, formatter_class=HelpFormatter)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the docstring kept as written; a study's override flags list their own defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def experiment_parser(prog: str, doc: str, protocol: Settings) -> Parser:
    """The flags of one experiment: its settings (defaults: the protocol's) and the run flags."""
    p = parser(prog, doc)
    add_settings(p, protocol)
    add_run_flags(p)
    return p


Notes = Callable[[list[report.Row], float], str]        # (rows, solved_at) -> lines printed below the table


@dataclass
class Job:
    """One experiment of a script: its checked settings (and a study's own), the protocol's, how to run
    it and draw it. `run` gives the rows of each figure (by name); the figures' files are written as one unit.
    """
    figures: tuple[report.Figure, ...]
    settings: Settings
    protocol: Settings
    run: Callable[[torch.Generator], dict[str, list[report.Row]]]
    notes: dict[str, Notes] = field(default_factory=dict)
    study: StudySettings | None = None
    study_protocol: StudySettings | None = None
    record: dict = field(default_factory=dict)      # what the study adds to the JSON (chosen rates, ...)
    expected: Callable[[Settings], dict[tuple[str, int], tuple[int, int]]] | None = None
                                                    # (model, sweep) -> (params, rounds) its CSV must hold

    def configured(self) -> dict:
        """What the flags set: the experiment's settings and the study's own."""
        own = {} if self.study is None else {"study": dataclasses.asdict(self.study)}
        return {**dataclasses.asdict(self.settings), **own}

    def recorded(self) -> dict:
        """What the JSON says was run: the settings and what the run added (chosen rates, ...)."""
        return {**self.configured(), **self.record}

    def at_defaults(self) -> bool:
        return self.settings == self.protocol and self.study == self.study_protocol

    def memory_bytes(self) -> int:
        return self.settings.memory_bytes() if self.study is None else self.study.memory_bytes(self.settings)


def single(figure: report.Figure, s: Settings, protocol: Settings, run: Callable[[Settings, torch.Generator], list],
           expected: Callable[[Settings], dict] | None = None) -> Job:
    """The job of a script with one figure: `run(settings, gen)` gives its rows; `expected(settings)`, the
    groups of rows such a run writes."""
    return Job((figure,), s, protocol, lambda gen: {figure.name: run(s, gen)}, expected=expected)


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


def available_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(jobs: list[Job], dev: torch.device) -> None:
    need = max(job.memory_bytes() for job in jobs)        # side by side only when all of them fit (`side_by_side`)
    free = available_bytes(dev)
    if need > free:
        raise UsageError(f"this run needs about {need / 2 ** 30:.1f} GiB at once and {dev.type} has "
                         f"{free / 2 ** 30:.1f} GiB free: lower --rounds or the sweep")


def folder(prog: str, jobs: list[Job], args: argparse.Namespace) -> Path:
    """Where the run's files go: --out; the committed results at the protocol defaults; else a
    folder under runs/ named by a digest of every effective setting, the seed and --quick."""
    if args.out is not None:
        return args.out
    if not args.quick and args.seed == 0 and all(job.at_defaults() for job in jobs):
        return COMMITTED
    what = json.dumps([[job.figures[0].name, job.configured()] for job in jobs] + [args.seed, args.quick], sort_keys=True)
    return RUNS / f"{Path(prog).stem}-{hashlib.sha256(what.encode()).hexdigest()[:12]}"


def source(prog: str, jobs: list[Job], args: argparse.Namespace) -> Path:
    """Where --plot-only reads: the run of the same flags, or, for another --solved-at only, the run
    made at the default threshold (its results do not depend on it)."""
    here = folder(prog, jobs, args)
    if args.out is not None or all((here / f"{f.name}.csv").exists() for job in jobs for f in job.figures):
        return here
    at_default = [dataclasses.replace(job, settings=dataclasses.replace(job.settings, solved_at=job.protocol.solved_at))
                  for job in jobs]
    return folder(prog, at_default, args)


def writable_folder(out: Path) -> Path:
    """Check that the results can go to `out` without creating anything yet: a refused run leaves no
    empty folder behind (the folder itself is made just before the files are written). A full disk there
    is an OSError (status 1), not bad input."""
    existing = next(p for p in (out, *out.parents) if p.exists() or p == Path(p.anchor or "."))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(existing))
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):                  # a full disk, not bad input: status 1
            raise OSError(e.errno, e.strerror, str(out)) from None
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def run_info(prog: str, args: argparse.Namespace, dev: torch.device, command: str, ran: "Ran") -> dict:
    return {"script": prog, "seed": args.seed, "quick": args.quick, "device_used": str(dev), "torch": torch.__version__,
            "threads": ran.threads, "python": platform.python_version(),
            "train_eval_seconds": round(ran.seconds, 3), "command": command}


# ----------------------------------------------------------------------------- running the jobs

@dataclass
class Shown:
    """A figure as a run shows it: its summaries, CSV text, PNG and printed lines (its table or divergence
    lines, its notes)."""
    summaries: list[report.Summary]
    text: str
    png: bytes
    printed: list[str]


def shown(job: Job, rows: dict[str, list[report.Row]]) -> dict[str, Shown]:
    """Each figure of a job as its rows show it (drawn where the job ran: side by side, beside the others)."""
    solved_at, out = job.settings.solved_at, {}
    for f in job.figures:
        summaries = report.summarize(rows[f.name], solved_at, f.columns, report.deciding(f))
        png = f.render(summaries, rows[f.name], solved_at) if f.render else report.plot(summaries, f, solved_at)
        printed = [report.table(summaries, f.columns) if f.table else report.divergence_lines(summaries, f.columns)]
        if f.name in job.notes:
            printed.append(job.notes[f.name](rows[f.name], solved_at))
        out[f.name] = Shown(summaries, report.csv_text(rows[f.name], f.columns), png, printed)
    return out


@dataclass
class Ran:
    """A job's rows (by figure), how long it took (the run, not its figures) and on how many intra-op
    threads, and its figures as shown."""
    rows: dict[str, list[report.Row]]
    seconds: float
    threads: int
    shown: dict[str, Shown]


def ran(job: Job, dev: torch.device, seed: int) -> Ran:
    start = time.perf_counter()
    rows = job.run(torch.Generator(dev).manual_seed(seed))
    seconds = time.perf_counter() - start
    return Ran(rows, seconds, torch.get_num_threads(), shown(job, rows))


def side_by_side(jobs: list[Job], dev: torch.device) -> bool:
    """Whether the jobs run at once, one process each: on the CPU, when the intra-op threads allowed
    (torch's, OMP_NUM_THREADS) give each process one at least, and all of them fit in memory together.
    A job's numbers depend on its seed, not on the process it runs in."""
    return (1 < len(jobs) == workers_for(len(jobs), dev)
            and sum(job.memory_bytes() for job in jobs) <= available_bytes(dev))


class Forked:
    """A job's process, as interrupts.CHILDREN ends it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        try:
            return os.waitpid(self.pid, 0)[1]
        except ChildProcessError:
            return 0


def run_jobs(jobs: list[Job], dev: torch.device, seed: int) -> list[Ran]:
    """Every job run: one after the other, or side by side (`side_by_side`), one process each; what a job
    adds to its record comes back with its rows. An error in any job is raised here, as it would be in order."""
    if not side_by_side(jobs, dev):
        return [ran(job, dev, seed) for job in jobs]
    tasks = [lambda job=job: (ran(job, dev, seed), job.record) for job in jobs]
    results = in_processes(tasks, len(jobs), [job.figures[0].name for job in jobs])
    for job, (_, record) in zip(jobs, results):
        job.record.update(record)
    return [result for result, _ in results]


def workers_for(tasks: int, dev: torch.device) -> int:
    """How many processes `tasks` independent tasks can run in: on the CPU, one per intra-op thread allowed
    (torch's, OMP_NUM_THREADS), at most one per task; elsewhere one."""
    return max(1, min(tasks, torch.get_num_threads())) if dev.type == "cpu" and hasattr(os, "fork") else 1


def in_processes(tasks: list[Callable[[], Any]], workers: int, names: list[str] | None = None) -> list[Any]:
    """The results of `tasks`, in order, run in `workers` processes: this one and forked ones, the tasks
    dealt round-robin (task i to process i % workers), each process on an equal share of the intra-op
    threads. A task's result must depend on its own inputs only (not on what ran before it in its process).
    An error in a forked task is raised here as itself; a process that dies is a clear error."""
    if workers <= 1:
        return [task() for task in tasks]
    allowed = torch.get_num_threads()
    children: list[tuple[Forked, int, list[int]]] = []
    try:
        torch.set_num_threads(max(1, allowed // workers))
        for w in range(1, workers):
            mine = list(range(w, len(tasks), workers))
            with interrupts.held():
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:
                    _child([tasks[i] for i in mine], read, write)
                os.close(write)
                children.append((Forked(pid), read, mine))
                interrupts.CHILDREN.add(children[-1][0])
        results: dict[int, Any] = {i: tasks[i]() for i in range(0, len(tasks), workers)}
        for child, read, mine in children:
            with os.fdopen(read, "rb") as pipe:
                payload = pipe.read()
            status = child.wait()
            interrupts.CHILDREN.discard(child)
            if not payload:
                what = ", ".join(names[i] if names else f"task {i}" for i in mine)
                raise MemoryError(f"the process of {what} ended without its results (status {status}: killed for memory?)")
            outcome = pickle.loads(payload)
            if isinstance(outcome, BaseException):
                raise outcome
            results.update(zip(mine, outcome))
        return [results[i] for i in range(len(tasks))]
    finally:
        torch.set_num_threads(allowed)
        for child, _, _ in children:
            if child in interrupts.CHILDREN:
                child.kill()
                child.wait()
                interrupts.CHILDREN.discard(child)


def _child(tasks: list[Callable[[], Any]], read: int, write: int) -> None:
    """A forked process: run its tasks and send their results (or the first error) up the pipe, then end at
    once. A signal ends it silently: the parent, which gets it too or ends it, says the one line."""
    for signum in interrupts.SIGNALS:
        signal.signal(signum, lambda *_: os._exit(130))
    os.close(read)
    try:
        outcome: Any = [task() for task in tasks]
    except BaseException as e:                        # noqa: BLE001  (every error goes up to the parent)
        outcome = e
    try:
        payload = pickle.dumps(outcome)
    except Exception:                                 # noqa: BLE001  (an error that does not pickle: its text)
        payload = pickle.dumps(RuntimeError(f"{outcome.__class__.__name__}: {outcome}"))
    with os.fdopen(write, "wb") as pipe:
        pipe.write(payload)
    os._exit(0)


@dataclass
class Outcome:
    """What a run has put on disk so far: said truthfully if anything fails afterwards."""
    written: list[Path] = field(default_factory=list)


def execute(prog: str, jobs: list[Job], args: argparse.Namespace, argv: list[str] | None, outcome: Outcome) -> None:
    """Run (or reload) every job and print its tables; then write the files of all jobs as one unit (a
    study's figures are one result: replaced together or not at all) and say where."""
    dev = device(args.device)
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in [0, 2**63 - 1], got {args.seed}")
    out = writable_folder(folder(prog, jobs, args))
    src = source(prog, jobs, args) if args.plot_only else out
    if not args.plot_only:
        check_fits(jobs, dev)
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    files: dict[Path, Callable[[Path], None]] = {}
    results = iter([] if args.plot_only else run_jobs(jobs, dev, args.seed))
    for job in jobs:
        solved_at = job.settings.solved_at
        if args.plot_only:
            rows = {f.name: report.read_csv(src / f"{f.name}.csv", f.models, f.columns) for f in job.figures}
            info = {f.name: {**read_record(src / f"{f.name}.json", prog, f.name, src / f"{f.name}.csv", job),
                             "replotted": {"from": str(src / f"{f.name}.csv"), "solved_at": solved_at, "command": command}}
                    for f in job.figures}
            if job.expected is not None:
                for f in job.figures:
                    check_groups(src / f"{f.name}.csv", rows[f.name], job.expected(job.settings))
            views = shown(job, rows)
        else:
            result = next(results)
            views = result.shown
            done = {**run_info(prog, args, dev, command, result), "settings": job.recorded()}
            info = {f.name: {**done, "figure": f.name} for f in job.figures}
        for f in job.figures:
            view = views[f.name]
            record = {**info[f.name], "diverged": report.divergence(view.summaries, f.columns)}
            if not args.plot_only:
                record["csv_sha256"] = report.digest(view.text)
            files[out / f"{f.name}.png"] = report.write_bytes(view.png)
            if src != out or not args.plot_only:        # a redraw in place leaves the run's CSV and JSON as they are
                files[out / f"{f.name}.csv"] = report.write_text(view.text)
                files[out / f"{f.name}.json"] = report.write_text(report.json_text(record))
            print(*view.printed, sep="\n")
    sys.stdout.flush()                                  # what cannot be printed stops the run before any write
    out.mkdir(parents=True, exist_ok=True)
    report.write_unit(files)
    outcome.written = list(files)
    if argv is None:                # the script's own run, its files written: a late signal must not say otherwise
        interrupts.settle()
    print("wrote " + ", ".join(map(str, files)))


def read_record(path: Path, prog: str, figure: str, csv_path: Path, job: Job) -> dict:
    """The record (JSON) of the run that wrote a CSV: it must be there, be this project's strict JSON, name
    this script and figure, hold the settings these flags give (but for the solved threshold, which only
    scores) and the digest of that very CSV (a CSV edited, swapped or cut since is refused)."""
    if not path.is_file():
        raise report.DataError(f"{path}: missing: a results CSV is read only beside the record of its run")
    try:
        record = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise report.DataError(f"{path}: not a record of this project ({e.__class__.__name__})") from None
    if not isinstance(record, dict) or record.get("script") != prog or record.get("figure") != figure:
        raise report.DataError(f"{path}: not the record of a {prog} run of {figure}")
    if record.get("csv_sha256") != report.digest(csv_path.read_bytes().decode("utf-8", "replace")):
        raise report.DataError(f"{csv_path}: does not match the record of its run ({path.name}): edited since?")
    recorded = json.loads(report.json_text(job.recorded()))         # a study may record what it trains instead
    configured = {k: recorded[k] for k in job.configured()}
    found = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    if any(found.get(k) != v for k, v in configured.items() if k != "solved_at"):
        raise report.DataError(f"{path}: records other settings than these flags give")
    return record


def check_groups(path: Path, rows: list[report.Row], expected: dict[tuple[str, int], tuple[int, int]]) -> None:
    """The rows hold exactly the (model, sweep) groups such a run writes, each with its parameter count and
    rounds 0..rounds-1."""
    found: dict[tuple[str, int], list[report.Row]] = {}
    for r in rows:
        found.setdefault((r.model, r.sweep), []).append(r)
    for key in sorted(set(found) ^ set(expected)):
        raise report.DataError(f"{path}: {'holds' if key in found else 'lacks'} {key[0]} {key[1]}, which such a run "
                               f"{'never writes' if key in found else 'writes'}")
    for key, (params, rounds) in expected.items():
        if {r.params for r in found[key]} != {params} or sorted(r.round for r in found[key]) != list(range(rounds)):
            raise report.DataError(f"{path}: {key[0]} {key[1]} should have {params} parameters and rounds 0..{rounds - 1}")


def _no_constant(name: str):
    raise ValueError(f"{name} is not strict JSON")


def main(p: Parser, jobs_of: Callable[[argparse.Namespace], list[Job]], argv: list[str] | None = None) -> int:
    """Parse the flags, build and check every job, then run them, write their files, print their tables."""
    prog, outcome = p.prog, Outcome()
    try:
        args = p.parse_args(argv)
        jobs = jobs_of(args)
        execute(prog, jobs, args, argv, outcome)
    except (UsageError, report.DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, torch.OutOfMemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not isinstance(e, torch.OutOfMemoryError) and "allocate" not in str(e):
            raise                                   # not an allocation that failed: a bug, shown as one
        print(f"{prog}: error: out of memory ({str(e).splitlines()[0][:120] if str(e) else 'MemoryError'}): "
              "lower --rounds or the sweep", file=sys.stderr)
        return 2
    except OSError as e:
        state = (f"the results were written ({', '.join(map(str, outcome.written))})" if outcome.written
                 else "the previous files are untouched")
        print(f"{prog}: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}; {state}", file=sys.stderr)
        return 1
    return 0


def study_parser(prog: str, doc: str, protocols: dict[str, Settings], names: list[str],
                 own: dict[str, StudySettings] | None = None) -> Parser:
    """The flags of a study: the experiment settings `names` and the study's own settings, each given value
    applied to every experiment that has it (not given, each keeps its own default, listed in the help),
    --experiment when the study runs more than one, and the run flags."""
    p = parser(prog, doc)
    add_overrides(p, protocols, names)
    if own:
        add_overrides(p, own, list(dict.fromkeys(f.name for s in own.values() for f in fields(s))))
    if len(protocols) > 1:
        p.add_argument("--experiment", choices=(*protocols, "all"), default="all", help="which experiments to run")
    add_run_flags(p)
    return p


def study_settings(args: argparse.Namespace, protocols: dict[str, Settings],
                   own: dict[str, StudySettings] | None = None) -> dict[str, tuple[Settings, StudySettings | None]]:
    """The checked settings, the experiment's and the study's own, of every experiment the study runs (all
    checked before any trains); a study flag that no experiment it runs can apply is refused."""
    chosen = [e for e in protocols if getattr(args, "experiment", "all") in (e, "all")]
    refuse_unused(args, [protocols[e] for e in chosen] + ([own[e] for e in chosen] if own else []),
                  [*protocols.values(), *(own or {}).values()], chosen)
    out = {}
    for e in chosen:
        base = settings_of(args, protocols[e])
        study = None
        if own is not None:
            study = overridden(own[e], args).check_with(base)
            study = (study.quick() if args.quick else study).check_with(base)
        out[e] = (base, study)
    return out


def refuse_unused(args: argparse.Namespace, applied: list[Checked], every: list[Checked], chosen: list[str]) -> None:
    """A study flag given on the command line that none of the settings `applied` (those of the experiments the
    run chose) has is refused, not silently ignored (`every`: all the settings the study's flags come from)."""
    having = {f.name for s in applied for f in fields(s)}
    for name in dict.fromkeys(f.name for s in every for f in fields(s)):
        if getattr(args, name, None) is not None and name not in having:
            raise UsageError(f"{flag(name)} does not apply to --experiment {getattr(args, 'experiment', 'all')}: "
                             "it applies to no experiment this run trains")


def settings_of(args: argparse.Namespace, defaults: Settings) -> Settings:
    """A single experiment's settings from its flags, reduced by --quick, checked."""
    s = overridden(defaults, args).check()
    return (s.quick() if args.quick else s).check()
