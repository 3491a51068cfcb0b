"""The CUDA path (skipped without a GPU): every entry script's quick run on the GPU, and the engine on the
GPU ending where it ends on the CPU (whose engine the oracle checks against a plain torch.optim loop)."""
import json

import pytest
import torch

import cli
import data
import engine
from models import NaiveBoolNet, NaiveCNN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SCRIPTS = ["eval_cnn", "eval_bool", "eval_ablations", "eval_exploration", "eval_mechanism", "eval_scaling", "eval_search"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_on_cuda(script, tmp_path, capsys):
    module = __import__(script)
    assert cli.main(module.arguments(), module.jobs, ["--quick", "--device", "cuda", "--out", str(tmp_path)]) == 0
    records = list(tmp_path.glob("*.json"))
    assert records and all(json.loads(p.read_text())["device_used"].startswith("cuda") for p in records)
    assert "wrote " in capsys.readouterr().out


@pytest.mark.parametrize("templates,batch", [
    (lambda: [NaiveCNN(1), NaiveCNN(3), NaiveCNN(3, frozen_conv=True)], lambda g, r: data.pattern_pairs((r,), g)),
    (lambda: [NaiveBoolNet(2), NaiveBoolNet(7)], lambda g, r: data.and_points((r, 16), g)),
])
def test_the_engine_on_cuda_ends_where_it_ends_on_the_cpu(templates, batch):
    stacks = {}
    for device in ("cpu", "cuda"):
        gen = torch.Generator(device).manual_seed(0)
        stack = engine.init_stack(templates(), 4, torch.Generator("cpu").manual_seed(1))
        stack = engine.Stack({k: v.to(device) for k, v in stack.params.items()},
                             {k: v.to(device) for k, v in stack.masks.items()}, stack.groups)
        batches = [batch(torch.Generator("cpu").manual_seed(s), stack.networks) for s in range(30)]
        engine.train(stack, lambda s: ((batches[s][0].to(device),), batches[s][1].to(device)), 30,
                     engine.make_optimizer("sgd", 0.1, 0.5))
        stacks[device] = stack
    for name, p in stacks["cpu"].params.items():
        torch.testing.assert_close(stacks["cuda"].params[name].cpu(), p, rtol=1e-4, atol=1e-5)
