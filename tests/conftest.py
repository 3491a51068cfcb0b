import os
import sys
from pathlib import Path

# One thread for torch, here and in every child process a test starts (they inherit the environment): the
# tensors of the tests are tiny, and a second intra-op thread on shared cores makes a small matmul 100 to
# 1000 times slower (a --quick run of eval_cnn.py in a fresh process: 7 s on two threads, 2.4 s on one).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
