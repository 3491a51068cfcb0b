"""Data of both experiments, drawn as batched tensors on any device.

Experiment 1: sequences of 64 floats from U[-0.5, 0.5); a positive sequence has 1.0 written at
positions i, i+1 and i+3 (i uniform in 0..LAST_START = 59), position i+2 keeps its noise.
Experiment 2: points x ~ N(0, I2) labelled 1 iff both coordinates are positive.
Every function takes a `torch.Generator`, so a run is reproducible from one seed.
"""
import torch
from torch import Tensor

SEQ_LEN = 64
PATTERN = (1.0, 1.0, 0.0, 1.0)            # the kernel that solves experiment 1; 0 means "don't care"
PATTERN_OFFSETS = (0, 1, 3)               # the positions of a match that are set to 1.0
LAST_START = 59                           # the protocol's positives start at 0..59 inclusive
MIN_POSITIVES = 4                         # experiment 2 skips a batch with fewer positives


def noise(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Sequences of U[-0.5, 0.5) noise, shape (*shape, 1, SEQ_LEN) (a channel dim, as Conv1d wants)."""
    return torch.rand(*shape, 1, SEQ_LEN, generator=gen, device=gen.device).sub_(0.5)


def plant_pattern(x: Tensor, gen: torch.Generator) -> Tensor:
    """Write 1.0 at offsets 0, 1 and 3 of a uniformly placed window in every sequence of x (in place)."""
    start = torch.randint(0, LAST_START + 1, x.shape[:-1], generator=gen, device=gen.device)
    offsets = torch.tensor(PATTERN_OFFSETS, device=x.device)
    return x.scatter_(-1, start[..., None] + offsets, 1.0)


def pattern_pairs(shape: tuple[int, ...], gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """One negative and one positive sequence per index of `shape`.

    Returns x of shape (*shape, 2, 1, SEQ_LEN) and targets (*shape, 2) = [0, 1].
    """
    x = noise((*shape, 2), gen)
    plant_pattern(x[..., 1, :, :], gen)
    y = torch.tensor([0.0, 1.0], device=x.device).expand(*shape, 2)
    return x, y


def pattern_validation_set(pairs: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """`pairs` negative/positive pairs as one flat set: x (2*pairs, 1, SEQ_LEN), y (2*pairs,)."""
    x, y = pattern_pairs((pairs,), gen)
    return x.reshape(2 * pairs, 1, SEQ_LEN), y.reshape(2 * pairs)


def and_points(shape: tuple[int, ...], gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Points x ~ N(0, I2) of shape (*shape, 2) and labels y = (x1 > 0 and x2 > 0) of shape `shape`."""
    x = torch.randn(*shape, 2, generator=gen, device=gen.device)
    return x, (x > 0).all(-1).float()


def latents(shape: tuple[int, ...], gen: torch.Generator, dim: int = 2) -> Tensor:
    """Latents z ~ N(0, I) for the hypernetworks, shape (*shape, dim)."""
    return torch.randn(*shape, dim, generator=gen, device=gen.device)


def drop_skipped(active: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each round's steps so that the kept ones come first, in order, and count them.

    `active` is (steps, rounds), True where a round takes its step. Returns (lengths, order):
    round r's j-th kept step is step order[j, r]. A skipped step changes nothing, so training round
    r on steps order[0, r], ..., order[lengths[r] - 1, r] is exactly training it on all steps with
    the skips.
    """
    order = torch.argsort((~active).to(torch.uint8), dim=0, stable=True)
    return active.sum(0), order
