"""Check the write-up's discussion: other optimizers, smooth surrogates, longer training.

For the Naive family of each experiment, the faithful sweep next to the same sweep trained
  - with Adam (lr 0.01), RMSprop (lr 0.01, momentum as the protocol) or Adagrad (lr 0.1);
  - with a smooth surrogate of the hard operator (log-sum-exp pooling at T = 0.1 for experiment 1;
    softplus or leaky ReLU for experiment 2), the trained network always evaluated with max / ReLU;
  - for 4x the steps.
Each variant is a copy of the experiment's settings with a few fields changed; the flags below change
the base settings, and so every variant. The variants set the optimizer, learning rate and surrogate
themselves: those are not flags here. Writes ablation_cnn.{png,csv,json} and ablation_bool.{png,csv,json}.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys
from pathlib import Path

import torch

import cli
import data
import eval_bool
import eval_cnn
import report

EXPERIMENTS = {"cnn": eval_cnn, "bool": eval_bool}
LONGER = 4
FLAGS = ["rounds", "steps", "solved_at", "min_filters", "max_filters", "min_width", "max_width"]


def variants(experiment: str, base: cli.Settings) -> dict[str, cli.Settings]:
    """The variants of an experiment's base settings, by name."""
    r = dataclasses.replace
    if experiment == "cnn":
        surrogates = {"LSE pool T=0.1": r(base, pool="lse", temperature=0.1)}
    else:
        surrogates = {"softplus": r(base, activation="softplus"), "leaky ReLU": r(base, activation="leaky")}
    return {"SGD (protocol)": base,
            "Adam": r(base, optimizer="adam", lr=0.01),
            "RMSprop": r(base, optimizer="rmsprop", lr=0.01),
            "Adagrad": r(base, optimizer="adagrad", lr=0.1),
            **surrogates,
            f"SGD, {LONGER}x steps": r(base, steps=LONGER * base.steps)}


def naive_sweep(experiment: str, s: cli.Settings, gen: torch.Generator) -> list[report.Row]:
    if experiment == "cnn":
        x_val, y_val = data.pattern_validation_set(eval_cnn.VALIDATION_PAIRS, gen)
        return eval_cnn.sweep(s, gen, x_val, y_val, families=("Naive",))
    return eval_bool.sweep(s, gen, families=("Naive",))


def figure(experiment: str, base: cli.Settings) -> report.Figure:
    script = EXPERIMENTS[experiment]
    return dataclasses.replace(script.FIGURE, name=f"ablation_{experiment}", models=tuple(variants(experiment, base)),
                               title=f"{script.FIGURE.title}: Naive, trained otherwise")


def job(experiment: str, base: cli.Settings) -> cli.Job:
    chosen = {name: v.check() for name, v in variants(experiment, base).items()}

    def run(gen: torch.Generator) -> dict[str, list[report.Row]]:
        rows = [dataclasses.replace(r, model=name) for name, v in chosen.items() for r in naive_sweep(experiment, v, gen)]
        return {f"ablation_{experiment}": rows}
    return cli.Job((figure(experiment, base),), base, EXPERIMENTS[experiment].PROTOCOL, run,
                   record={name: dataclasses.asdict(v) for name, v in chosen.items()},
                   need=max(v.memory_bytes() for v in chosen.values()))


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, {e: m.PROTOCOL for e, m in EXPERIMENTS.items()}, FLAGS)


def jobs(args) -> list[cli.Job]:
    return [job(e, base) for e, base in cli.study_settings(args, {e: m.PROTOCOL for e, m in EXPERIMENTS.items()}).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
