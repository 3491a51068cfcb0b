"""Check the write-up's discussion: other optimizers, smooth surrogates, longer training.

For the Naive family of each experiment, the faithful sweep next to the same sweep trained
  - with Adam (lr 0.01), RMSprop (lr 0.01, momentum as the protocol) or Adagrad (lr 0.1);
  - with a smooth surrogate of the hard operator (log-sum-exp pooling at T = 0.1 for experiment 1;
    softplus or leaky ReLU for experiment 2), the trained network always evaluated with max / ReLU;
  - for 4x the protocol's steps.
Every variant is a command line of eval_cnn.py / eval_bool.py: the same code, data law and scoring.
Writes ablation_cnn.{png,csv,json} and ablation_bool.{png,csv,json} in --out.
"""
import dataclasses
import sys

import torch

import cli
import data
import eval_bool
import eval_cnn
import report

OPTIMIZER_VARIANTS = {"Adam": ["--optimizer", "adam", "--lr", "0.01"],
                      "RMSprop": ["--optimizer", "rmsprop", "--lr", "0.01"],
                      "Adagrad": ["--optimizer", "adagrad", "--lr", "0.1"]}
SURROGATES = {"cnn": {"LSE pool T=0.1": ["--pool", "lse", "--temperature", "0.1"]},
              "bool": {"softplus": ["--activation", "softplus"], "leaky ReLU": ["--activation", "leaky"]}}
LONGER = 4
SWEEP_FLAGS = {"cnn": ("min_filters", "max_filters"), "bool": ("min_width", "max_width")}


def variants(experiment: str, args) -> dict[str, list[str]]:
    return {"SGD (protocol)": [], **OPTIMIZER_VARIANTS, **SURROGATES[experiment],
            f"SGD, {LONGER}x steps": ["--steps", str(LONGER * args.steps)]}


def study(experiment: str, script, naive_sweep):
    names = tuple(variants(experiment, script.arguments().parse_args([])))
    fig = dataclasses.replace(script.FIGURE, name=f"ablation_{experiment}", models=names,
                              title=f"{script.FIGURE.title}: Naive, trained otherwise")

    def run(args, gen: torch.Generator) -> list[report.Row]:
        shared = ["--rounds", str(args.rounds), "--steps", str(args.steps), "--momentum", str(args.momentum)]
        for name in SWEEP_FLAGS[experiment]:
            shared += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        shared += ["--quick"] if args.quick else []
        rows = []
        for name, extra in variants(experiment, args).items():
            v = script.arguments().parse_args(shared + extra)
            cli.check(v)
            rows += [dataclasses.replace(r, model=name) for r in naive_sweep(v, gen)]
        return rows
    return fig, run


def cnn_naive(args, gen):
    x_val, y_val = data.pattern_validation_set(eval_cnn.VALIDATION_PAIRS, gen)
    return eval_cnn.sweep(args, gen, x_val, y_val, families=("Naive",))


STUDIES = {"cnn": (eval_cnn, cnn_naive), "bool": (eval_bool, lambda args, gen: eval_bool.sweep(args, gen, ("Naive",)))}


def main(argv: list[str] | None = None) -> int:
    studies = []
    for experiment, (script, naive_sweep) in STUDIES.items():
        others = [s for e, (s, _) in STUDIES.items() if e != experiment]
        p = cli.study_parser(f"eval_ablations.py ({experiment})", script, others)
        studies.append((p, *study(experiment, script, naive_sweep), None))
    return cli.main_each(studies, argv)


if __name__ == "__main__":
    sys.exit(main())
