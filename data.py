"""Data of both experiments, drawn as batched tensors on any device.

Experiment 1: sequences of `seq_len` floats from U[-0.5, 0.5). A pattern is a string of `1` (a position
set to 1.0 in a positive sequence) and `0` (a position that keeps its noise: "any value"); the
protocol's is `1101` in sequences of 64, placed at a start i uniform in 0..59 (i, i+1 and i+3 set to
1.0). As in the original, a pattern never starts in the last window (64 - 4 = 60 is never drawn), so it
must be shorter than the sequences. Experiment 2: points x ~ N(0, I2) labelled 1 iff both coordinates are positive.
Every function takes a `torch.Generator`, so a run is reproducible from one seed.
"""
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

MIN_POSITIVES = 4                         # experiment 2 skips a batch with fewer positives
NOISE = 0.5                               # noise lies in [-NOISE, NOISE)


@dataclass(frozen=True)
class Pattern:
    """A pattern to detect, and the length of the sequences it is hidden in."""
    text: str = "1101"
    seq_len: int = 64

    def __post_init__(self) -> None:
        if not self.text or set(self.text) - {"0", "1"}:
            raise ValueError(f"a pattern is a non-empty string of 1 and 0, got {self.text[:40]!r}")
        if "1" not in self.text:
            raise ValueError(f"a pattern needs at least one 1 (a position set to 1.0), got {self.text!r}")
        if len(self.text) >= self.seq_len:
            raise ValueError(f"the pattern ({len(self.text)} long) must be shorter than the sequences ({self.seq_len})")

    @property
    def size(self) -> int:
        return len(self.text)

    @property
    def kernel(self) -> tuple[float, ...]:
        """The filter that detects it: 1 where the pattern says 1, 0 where any value will do."""
        return tuple(float(c) for c in self.text)

    @property
    def offsets(self) -> tuple[int, ...]:
        """The positions of a match that are set to 1.0."""
        return tuple(i for i, c in enumerate(self.text) if c == "1")

    @property
    def last_start(self) -> int:
        """The last start a positive's pattern may take: the original never uses the last window."""
        return self.seq_len - self.size - 1

    def bias(self) -> float:
        """Minus halfway between a match (score k, the number of 1s) and the best non-match. A window
        that is not the match keeps noise (< 0.5) on at least one of its 1-positions: it overlaps the
        planted 1.0s on at most m positions, m the largest overlap of the pattern's 1s with themselves
        shifted, so it scores below m + (k - m) / 2."""
        ones = set(self.offsets)
        m = max((len(ones & {o + s for o in ones}) for s in range(1 - self.size, self.size) if s), default=0)
        k = len(ones)
        return -(k + (m + (k - m) * NOISE)) / 2


PROTOCOL_PATTERN = Pattern()


def noise(shape: tuple[int, ...], gen: torch.Generator, seq_len: int = PROTOCOL_PATTERN.seq_len) -> Tensor:
    """Sequences of U[-0.5, 0.5) noise, shape (*shape, 1, seq_len) (a channel dim, as Conv1d wants)."""
    return torch.rand(*shape, 1, seq_len, generator=gen, device=gen.device).sub_(NOISE)


def plant_pattern(x: Tensor, gen: torch.Generator, pattern: Pattern = PROTOCOL_PATTERN) -> Tensor:
    """Write 1.0 at the pattern's 1-positions of a uniformly placed window in every sequence of x (in place)."""
    start = torch.randint(0, pattern.last_start + 1, x.shape[:-1], generator=gen, device=gen.device)
    offsets = torch.tensor(pattern.offsets, device=x.device)
    return x.scatter_(-1, start[..., None] + offsets, 1.0)


def pattern_pairs(shape: tuple[int, ...], gen: torch.Generator, pattern: Pattern = PROTOCOL_PATTERN
                  ) -> tuple[Tensor, Tensor]:
    """One negative and one positive sequence per index of `shape`.

    Returns x of shape (*shape, 2, 1, seq_len) and targets (*shape, 2) = [0, 1].
    """
    x = noise((*shape, 2), gen, pattern.seq_len)
    plant_pattern(x[..., 1, :, :], gen, pattern)
    y = torch.tensor([0.0, 1.0], device=x.device).expand(*shape, 2)
    return x, y


def pattern_validation_set(pairs: int, gen: torch.Generator, pattern: Pattern = PROTOCOL_PATTERN
                           ) -> tuple[Tensor, Tensor]:
    """`pairs` negative/positive pairs as one flat set: x (2*pairs, 1, seq_len), y (2*pairs,)."""
    x, y = pattern_pairs((pairs,), gen, pattern)
    return x.reshape(2 * pairs, 1, pattern.seq_len), y.reshape(2 * pairs)


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


# ----------------------------------------------------------------------------- validation of its own per round

def per_round_validation(rounds: int, pairs: int, gen: torch.Generator, pattern: Pattern = PROTOCOL_PATTERN
                         ) -> Callable[[int, int], tuple[tuple[Tensor], Tensor]]:
    """Each round its own validation set of `pairs` negative/positive pairs, drawn as the protocol's one is.

    Returns `engine.evaluate`'s data: `data(start, stop)` draws the sets of rows [start, stop) on demand,
    x (stop - start, 2*pairs, 1, seq_len) and y (2*pairs,) (the same labels for every round); row i is
    round i % `rounds` (the candidates of a round, stacked candidate-major, meet the same sequences).
    Round r's set comes from a generator of its own, seeded by the r-th of `rounds` seeds drawn from `gen`
    now (one draw), so it is the same whatever the chunks and their order, and reproducible from the seed.
    The last chunk's sets are held: groups of a stack that meet the same rounds one after another
    (`engine.evaluate` goes chunk by chunk across groups) draw them once.
    """
    seeds = torch.randint(0, 2 ** 62, (rounds,), generator=gen, device=gen.device).tolist()
    y = torch.tensor([0.0, 1.0], device=gen.device).repeat(pairs)

    def draw(start: int, stop: int) -> tuple[tuple[Tensor], Tensor]:
        own = torch.Generator(gen.device)
        sets = [pattern_validation_set(pairs, own.manual_seed(seeds[r % rounds]), pattern)[0] for r in range(start, stop)]
        return (torch.stack(sets),), y
    return last_chunk_held(rounds, draw)


def last_chunk_held(rounds: int, make: Callable[[int, int], tuple]) -> Callable[[int, int], tuple]:
    """`make(start, stop)` (the data of rows [start, stop), row i being round i % `rounds`), with the last
    chunk's result held: asked for the same rounds again, it gives the very same tensors (not made anew),
    which is how `engine.evaluate` knows that groups meet the same data and scores them together."""
    last: dict[tuple[int, int], tuple] = {}

    def data(start: int, stop: int) -> tuple:
        key = (start % rounds, stop - start)
        if key not in last:
            last.clear()
            last[key] = make(start, stop)
        return last[key]
    return data


# ----------------------------------------------------------------------------- misses by start

def stratified_test_set(per_start: int, gen: torch.Generator, pattern: Pattern = PROTOCOL_PATTERN
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """`per_start` positives at every start 0..last_start (not drawn: each start equally often), plus as
    many negatives, as negative/positive pairs.

    Returns x (N, 1, seq_len), y (N,) and the start of each positive's pattern, -1 for a negative;
    N = 2 * per_start * (last_start + 1).
    """
    starts = torch.arange(pattern.last_start + 1, device=gen.device).repeat(per_start)
    x = noise((len(starts), 2), gen, pattern.seq_len)
    offsets = torch.tensor(pattern.offsets, device=x.device)
    x[:, 1, 0].scatter_(-1, starts[:, None] + offsets, 1.0)
    y = torch.tensor([0.0, 1.0], device=x.device).repeat(len(starts))
    start = torch.stack([torch.full_like(starts, -1), starts], 1).reshape(-1)
    return x.reshape(-1, 1, pattern.seq_len), y, start


def misses_by_start(logits: Tensor, start: Tensor, n_starts: int) -> tuple[Tensor, Tensor]:
    """Where each network errs on a `stratified_test_set`: logits (R, N) with the decision `logit > 0`
    (a non-finite logit is always wrong) and `start` (N,) as that set gives it.

    Returns the false negatives by start, counts (R, n_starts), and the false positives, counts (R,).
    """
    positive = start >= 0
    says_yes = torch.where(torch.isfinite(logits), logits > 0, ~positive)
    missed = (~says_yes & positive).float()
    by_start = torch.zeros(len(logits), n_starts, device=logits.device)
    by_start.index_add_(1, start[positive], missed[:, positive])
    false_pos = (says_yes & ~positive).sum(-1)
    return by_start.long(), false_pos
