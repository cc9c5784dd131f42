"""Blocks' operations with their sizes left open, for the latency predictor's batches: each
block is described once per gene and input channels (`edgenas.arch.block_operations`), and the
sizes of every block of a batch are filled in as arrays."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np

from edgenas.arch import BlockShape, block_operations
from edgenas.cost._network_ops import _INDEX, _elementwise_terms

_STRIDE = attrgetter("gene.stride")


# A block is described once per gene and input channels, at an input size no network runs at,
# where the output size of any stride differs from it; its operations there are at its input
# size (_IN) or its output size (_OUT), and elementwise terms may be constants (_CONSTANT).
_PROBE = 1 << 20
_IN, _OUT, _CONSTANT = 0, 1, 2


def _grown(a: np.ndarray, used: int, extra: np.ndarray) -> np.ndarray:
    """``a``, its first ``used`` rows kept, with ``extra`` written after them (reallocated at
    twice the size when full, so that adding a few rows at a time stays cheap)."""
    need = used + len(extra)
    if need > len(a):
        grown = np.zeros((max(need, 2 * len(a), 256), *a.shape[1:]), a.dtype)
        grown[:used] = a[:used]
        a = grown
    a[used:need] = extra
    return a


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of ranges given by their starts and lengths, one after another, and the
    range each index belongs to."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return np.arange(len(owner)) + offsets, owner


class _Templates:
    """Blocks' operations with their sizes left open, one description per gene (its long skip
    aside) and input channels: a search meets the same block at several input sizes, and the
    sizes are filled in as arrays for all blocks of a batch at once.

    ``convs`` holds profile-key fields with the size as _IN or _OUT; ``terms`` the elementwise
    terms as feature column, size (_IN, _OUT or _CONSTANT) and amount (the value itself of a
    constant is in ``constants``); ``spans`` each description's first convolution, number of
    convolutions, first term and number of terms.
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[Any, ...], int] = {}
        self.convs = np.zeros((0, 7), np.int64)
        self.terms = np.zeros((0, 3), np.int64)
        self.constants = np.zeros(0)
        self.spans = np.zeros((0, 4), np.int64)
        self.n_convs = self.n_terms = 0

    def lookup(self, keys: list[tuple[Any, ...]], shapes: Sequence[BlockShape]) -> np.ndarray:
        """The description of each block (keyed by the first _SIZE_FREE fields of its
        ``_BLOCK_KEY``), describing those met for the first time."""
        ids = list(map(self.ids.get, keys))
        if None in ids:
            missing = [i for i, d in enumerate(ids) if d is None]
            new = dict(zip([keys[i] for i in missing], [shapes[i] for i in missing], strict=True))
            first = len(self.ids)
            self._describe(list(new.values()))
            self.ids.update(zip(new, range(first, first + len(new)), strict=True))
            ids = list(map(self.ids.get, keys))
        return np.fromiter(ids, np.intp, len(ids))

    def _describe(self, shapes: list[BlockShape]) -> None:
        # Plain numbers only are kept from each description (a batch may describe thousands).
        fields: list[int] = []
        terms: list[tuple[str, float, int | None]] = []
        counts: list[int] = []
        for shape in shapes:
            ops = block_operations(shape.gene, shape.in_channels, _PROBE)
            convs = ops.convs
            for c in convs:
                fields += (c.in_channels, c.out_channels, *c.kernel, c.stride, c.groups, c.in_size)
            block_terms = _elementwise_terms(ops)
            terms += block_terms
            counts += (len(convs), len(block_terms))
        new = len(shapes)
        n_convs, n_terms = np.array(counts, np.int64).reshape(new, 2).T
        # the sizes at the probe: the block's input size, or its output size as a strided
        # 'same' convolution makes it (equal to the input's at stride 1)
        out = -(-_PROBE // np.fromiter(map(_STRIDE, shapes), np.int64, new))
        conv_table = np.array(fields, np.int64).reshape(-1, 7)
        conv_table[:, 6] = self._code(conv_table[:, 6], np.repeat(out, n_convs))
        feature, amount, size = zip(*terms, strict=True) if terms else ((), (), ())
        constant = np.array([z is None for z in size], bool)
        amounts = np.array(amount, float)
        term_table = np.empty((len(terms), 3), np.int64)
        term_table[:, 0] = np.fromiter(map(_INDEX.__getitem__, feature), np.int64, len(terms))
        term_table[:, 1] = self._code(np.array([z or _PROBE for z in size], np.int64),
                                      np.repeat(out, n_terms))  # fmt: skip
        term_table[constant, 1] = _CONSTANT
        term_table[:, 2] = np.where(constant, 0, amounts)
        spans = np.stack([self.n_convs + np.cumsum(n_convs) - n_convs, n_convs,
                          self.n_terms + np.cumsum(n_terms) - n_terms, n_terms], axis=1)  # fmt: skip
        self.spans = _grown(self.spans, len(self.ids), spans)
        self.convs = _grown(self.convs, self.n_convs, conv_table)
        self.terms = _grown(self.terms, self.n_terms, term_table)
        self.constants = _grown(self.constants, self.n_terms, np.where(constant, amounts, 0.0))
        self.n_convs += len(conv_table)
        self.n_terms += len(terms)

    @staticmethod
    def _code(sizes: np.ndarray, out: np.ndarray) -> np.ndarray:
        """_IN or _OUT for sizes at the probe, given the output size of each one's block."""
        if ((sizes != _PROBE) & (sizes != out)).any():
            raise ValueError(
                "a block type describes an operation at a size other than the block's input "
                "and output size"
            )
        return np.where(sizes == _PROBE, _IN, _OUT)

    def expand(self, ids: np.ndarray, in_size: np.ndarray,
               out_size: np.ndarray) -> tuple[np.ndarray, ...]:  # fmt: skip
        """The operations of blocks given by their descriptions and sizes: the convolutions
        (their block, profile-key fields) and the elementwise terms (their block, feature
        column, value), each block's in its order."""
        first_conv, n_convs, first_term, n_terms = self.spans[ids].T
        at, conv_owner = _ranges(first_conv, n_convs)
        fields = self.convs[at]
        fields[:, 6] = np.where(fields[:, 6] == _IN, in_size[conv_owner], out_size[conv_owner])
        at, term_owner = _ranges(first_term, n_terms)
        column, size_code, amount = self.terms[at].T
        size = np.where(size_code == _IN, in_size[term_owner], out_size[term_owner])
        # as _elementwise computes them: integer elements, then millions
        values = np.where(size_code == _CONSTANT, self.constants[at], amount * size * size / 1e6)
        return conv_owner, fields, term_owner, column, values
