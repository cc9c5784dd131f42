"""A weight-sharing supernet over a staged space: every subnet's weights are slices of its own.

At each position of each stage (stage ``i``, block ``j``) the supernet holds one block per block
type of the space, each at the largest size the space allows there: the widest input and
output, the largest kernel, the largest expansion, with squeeze-excite. A subnet (a genotype of
the space) takes from them:

* channels (widths, expansions, squeeze-excite and bottleneck widths) as the first ``n``
  channels of each dimension;
* kernels as the centre crop of the largest: 7×7 → 5×5 → 3×3, and 5×3 or 3×5 from the centre;
* depth as the first ``d`` positions of each stage;
* resolution by feeding it images of that size (convolutions do not care).

The stem, the long-skip projections (one per position and span), the head and the classifier
(one after a head, one without) are sliced the same way. Activations, identity residuals and
long skips carry no weights and work as in the standalone network.

One mapping does both jobs: :meth:`Supernet.subnet_tensors` names, for each entry of a
standalone :class:`~edgenas.arch.Network`'s state dict, the slice of the supernet that holds it.
:meth:`Supernet.forward` runs the standalone network's own code on those slices (views, so the
gradients reach the supernet), and :meth:`Supernet.extract` copies them into a plain network.
The two therefore compute the same function by construction; the tests check it on random
genotypes of every block type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from edgenas.arch import BLOCKS, BlockGene, ConvBnAct, Genotype, Network, parse_kernel
from edgenas.errors import ConfigError
from edgenas.space import StagedSpace

__all__ = ["Supernet", "largest_subnet", "smallest_subnet", "stage_positions"]

# Genotype skeletons (module trees without storage) kept per supernet, so a training step does
# not rebuild one; a few hundred cover a sandwich's subnets for a long time.
_SKELETONS = 512


def stage_positions(space: StagedSpace, genotype: Genotype) -> tuple[tuple[int, int], ...]:
    """(stage, block within the stage) of each block of ``genotype``.

    Raises:
        ConfigError: the genotype is not in the space (the reason names the part that is not).
    """
    params = space.encode(genotype)
    positions: list[tuple[int, int]] = []
    for i in range(len(space.stages)):
        positions.extend((i, j) for j in range(int(params[f"s{i}.depth"])))
    return tuple(positions)


class Supernet(nn.Module):
    """The weights of every subnet of a staged space at once.

    Args:
        space: the staged space (such as ``edge_space()``) whose subnets it holds.
        in_channels, num_classes, mean, std, dropout: as for :class:`~edgenas.arch.Network`.
    """

    def __init__(
        self,
        space: StagedSpace,
        in_channels: int,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(space, StagedSpace):
            raise ConfigError(
                f"a supernet needs a staged space (such as edge), not {type(space).__name__}"
            )
        self.space = space
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.dropout = dropout
        kernels = [parse_kernel(k) for k in space.kernels]
        self.max_kernel = (max(k[0] for k in kernels), max(k[1] for k in kernels))
        max_expansion = max(space.expansions) if "ir" in space.block_types else 1
        with_se = any(space.se)
        stem = max(space.stems)

        # The standalone network's stem, normalisation and (largest) head, reused as they are.
        template = Network(
            Genotype(8, stem, (), 0), in_channels, num_classes, mean, std, dropout=dropout
        )
        self.normalize = template.normalize
        self.stem = template.stem

        self.stages = nn.ModuleList()
        self.skips = nn.ModuleDict()
        widths_so_far = [stem]  # every channel count a long skip's source can have
        previous = stem  # widest input of the stage's first block
        for i, stage in enumerate(space.stages):
            width = max(stage.widths)
            widths_so_far.extend(stage.widths)
            positions = nn.ModuleList()
            for j in range(max(stage.depths)):
                stride = stage.stride if j == 0 else 1
                in_max = previous if j == 0 else width
                types = nn.ModuleDict()
                for block_type in space.block_types:
                    gene = BlockGene(
                        block_type,
                        width,
                        self.max_kernel,
                        stride,
                        max_expansion if block_type == "ir" else 1,
                        se=with_se,
                    )
                    block = BLOCKS[block_type](in_max, gene)
                    shortcut = getattr(block, "shortcut", None)
                    if j == 0 and isinstance(shortcut, nn.Identity):
                        # The widest input equals the widest output, but a subnet's may not.
                        block.shortcut = ConvBnAct(in_max, width, (1, 1), stride, act=None)
                    types[block_type] = block
                positions.append(types)
                for span in space.skips:
                    if span:
                        self.skips[_skip_key(i, j, span)] = ConvBnAct(
                            max(widths_so_far), width, (1, 1), act=None
                        )
            self.stages.append(positions)
            previous = max(stage.widths)
        last = max(space.stages[-1].widths)
        head = max(space.heads)
        self.head = ConvBnAct(last, head, (1, 1), act="hswish") if head else nn.Identity()
        self.classifier = nn.ModuleDict({"none": nn.Linear(last, num_classes)})
        if head:
            self.classifier["head"] = nn.Linear(head, num_classes)
        self._skeleton = lru_cache(maxsize=_SKELETONS)(self._build_skeleton)

    # -- the mapping --------------------------------------------------------------------------
    def subnet_tensors(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """Each state-dict entry of ``genotype``'s standalone network, as a view of the slice of
        the supernet that holds it.

        Raises:
            ConfigError: the genotype is not a subnet of this supernet.
        """
        skeleton = self._skeleton(genotype)
        positions = skeleton.positions
        own: dict[str, torch.Tensor] = dict(self.named_parameters())
        own.update(self.named_buffers())
        tensors: dict[str, torch.Tensor] = {}
        for name, wanted in _skeleton_entries(skeleton).items():
            source = self._source_name(name, genotype, positions)
            tensor = own.get(source)
            if (
                tensor is None
                or tensor.ndim != len(wanted)
                or any(n > m for n, m in zip(wanted, tensor.shape, strict=True))
            ):
                raise ConfigError(
                    f"genotype {genotype} is not a subnet of this supernet: {name} of shape "
                    f"{tuple(wanted)} does not fit in {source}"
                )
            tensors[name] = _crop(tensor, wanted)
        return tensors

    def _source_name(
        self, name: str, genotype: Genotype, positions: tuple[tuple[int, int], ...]
    ) -> str:
        head, _, rest = name.partition(".")
        if head == "blocks":
            index, _, rest = rest.partition(".")
            i, j = positions[int(index)]
            return f"stages.{i}.{j}.{genotype.blocks[int(index)].type}.{rest}"
        if head == "skips":
            index, _, rest = rest.partition(".")
            i, j = positions[int(index)]
            return f"skips.{_skip_key(i, j, genotype.blocks[int(index)].skip)}.{rest}"
        if head == "classifier":
            return f"classifier.{'head' if genotype.head else 'none'}.{rest}"
        return name

    def _build_skeleton(self, genotype: Genotype) -> _Skeleton:
        positions = stage_positions(self.space, genotype)
        with torch.device("meta"):
            network = Network(genotype, self.in_channels, self.num_classes, dropout=self.dropout)
        return _Skeleton(network, positions)

    # -- use ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        """``genotype``'s logits for images ``x`` (float in [0, 1], at the genotype's
        resolution), computed on the supernet's own weights: gradients train the supernet,
        and in train mode BatchNorm updates the supernet's running statistics."""
        skeleton = self._skeleton(genotype)
        skeleton.network.train(self.training)
        return functional_call(skeleton.network, self.subnet_tensors(genotype), (x,))

    def extract(self, genotype: Genotype | str) -> Network:
        """``genotype``'s standalone network, with its weights and BatchNorm statistics copied
        from the supernet (on the supernet's device, in eval mode)."""
        if isinstance(genotype, str):
            genotype = Genotype.parse(genotype)
        tensors = self.subnet_tensors(genotype)
        # Built without storage and given the copies as its own: no initialisation to throw
        # away (which took longer than the copy).
        with torch.device("meta"):
            network = Network(genotype, self.in_channels, self.num_classes, dropout=self.dropout)
        copies = {k: v.detach().clone() for k, v in tensors.items()}
        network.load_state_dict(copies, assign=True)
        return network.eval()

    def largest_genotype(self, resolution: int | None = None) -> Genotype:
        """The largest subnet (see :func:`largest_subnet`)."""
        return largest_subnet(self.space, resolution)

    def smallest_genotype(self, resolution: int | None = None) -> Genotype:
        """The smallest subnet (see :func:`smallest_subnet`)."""
        return smallest_subnet(self.space, resolution)


def largest_subnet(space: StagedSpace, resolution: int | None = None) -> Genotype:
    """The widest, deepest subnet of ``space``: every block an ``ir`` (or the space's first
    type) with the largest kernel and expansion, squeeze-excite where the space allows it."""
    block_type = "ir" if "ir" in space.block_types else space.block_types[0]
    return _uniform_genotype(space, block_type, max, resolution or max(space.resolutions))


def smallest_subnet(space: StagedSpace, resolution: int | None = None) -> Genotype:
    """The narrowest, shallowest subnet of ``space``, of its cheapest block type."""
    order = ("ds", "ir", "conv", "bneck", "res")
    block_type = next(t for t in order if t in space.block_types)
    return _uniform_genotype(space, block_type, min, resolution or min(space.resolutions))


class _Skeleton:
    """A standalone network's module tree on the meta device (no storage), and where its
    blocks sit in the supernet."""

    def __init__(self, network: Network, positions: tuple[tuple[int, int], ...]) -> None:
        self.network = network
        self.positions = positions


def _skeleton_entries(skeleton: _Skeleton) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in skeleton.network.state_dict(keep_vars=True).items()}


def _skip_key(stage: int, block: int, span: int) -> str:
    return f"s{stage}b{block}l{span}"


def _crop(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The first ``n`` entries of every dimension, but the centre of a convolution's kernel."""
    if tensor.shape == shape:
        return tensor
    index: list[slice] = []
    for dim, (n, m) in enumerate(zip(shape, tensor.shape, strict=True)):
        start = (m - n) // 2 if tensor.ndim == 4 and dim >= 2 else 0
        index.append(slice(start, start + n))
    return tensor[tuple(index)]


def _uniform_genotype(
    space: StagedSpace, block_type: str, pick: Callable[[Sequence[Any]], Any], resolution: int
) -> Genotype:
    kernels = sorted(space.kernels, key=lambda k: parse_kernel(k)[0] * parse_kernel(k)[1])
    params: dict[str, object] = {
        "res": resolution,
        "stem": pick(space.stems),
        "head": pick(space.heads),
    }
    for i, stage in enumerate(space.stages):
        params[f"s{i}.depth"] = pick(stage.depths)
        params[f"s{i}.width"] = pick(stage.widths)
        params[f"s{i}.act"] = space.activations[0]
        for j in range(max(stage.depths)):
            p = f"s{i}.b{j}"
            params[f"{p}.type"] = block_type
            params[f"{p}.k"] = kernels[-1] if pick is max else kernels[0]
            params[f"{p}.e"] = pick(space.expansions)
            params[f"{p}.se"] = pick(space.se)
            params[f"{p}.id"] = pick is max and True in space.residuals
            params[f"{p}.skip"] = 0
    return space.decode(params)
