"""edgenas.arch: the genotype notation, every registered block and baseline built, trained a step,
exported and run by ONNX Runtime."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgenas.arch import (
    BASELINES,
    BLOCK_TYPES,
    BLOCKS,
    KERNELS,
    BlockGene,
    ConvOp,
    Genotype,
    Network,
    baseline,
    block_operations,
    build_model,
    export_onnx,
)
from edgenas.errors import ConfigError, GenotypeError

# ---------------------------------------------------------------------------------------------
# helpers


# Flag sets written as in the notation; each is placed where it is legal (see _in_context).
FLAGS = ("", "se", "hs", "id", "l2", "l3", "s2", "se_hs_id_l2", "s2_se_hs")


def _gene(block_type: str, kernel: str, flags: str) -> BlockGene:
    parts = set(flags.split("_")) - {""}
    skip = 2 if "l2" in parts else 3 if "l3" in parts else 0
    return BlockGene(
        block_type,
        16,
        kernel,  # type: ignore[arg-type]  # parsed by BlockGene
        stride=2 if "s2" in parts else 1,
        expansion=4 if block_type == "ir" else 1,
        se="se" in parts,
        act="hswish" if "hs" in parts else "relu",
        residual="id" in parts,
        skip=skip,
    )


def _canonical(block_type: str, kernel: str, flags: str) -> str:
    """The token the notation should write: type, k, e (ir only), c, s2, se, hs, id, l."""
    parts = set(flags.split("_")) - {""}
    token = [block_type, f"k{kernel}"]
    if block_type == "ir":
        token.append("e4")
    token.append("c16")
    for flag in ("s2", "se", "hs"):
        if flag in parts:
            token.append(flag)
    if "id" in parts and block_type not in ("res", "bneck"):  # those always have a shortcut
        token.append("id")
    token += [f for f in ("l2", "l3") if f in parts]
    return "_".join(token)


def _in_context(gene: BlockGene) -> Genotype:
    """The gene as block 2 after two 16-channel blocks, so id, l2 (block 0) and l3 (stem) fit."""
    prefix = (BlockGene("conv", 16), BlockGene("ds", 16, (3, 5)))
    return Genotype(32, 16, (*prefix, gene), head=64)


def _train_step(model: Network, batch: int = 2) -> None:
    """One forward and backward pass in training mode; every parameter must get a gradient."""
    g = model.genotype
    model.train()
    x = torch.rand(batch, 3, g.resolution, g.resolution, generator=torch.Generator().manual_seed(0))
    logits = model(x)
    assert logits.shape == (batch, 10)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _assert_onnx_matches(model: Network, batch: int = 2) -> None:
    """Exported at batch 1, the ONNX model runs at another batch size and agrees with PyTorch."""
    data = export_onnx(model)
    onnx.checker.check_model(onnx.load_from_string(data))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    r = model.genotype.resolution
    x = np.random.default_rng(1).random((batch, 3, r, r), dtype=np.float32)
    (onnx_logits,) = session.run(None, {"image": x})
    model.eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    assert onnx_logits.shape == (batch, 10)
    scale = max(1.0, float(np.abs(torch_logits).max()))
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=1e-4, atol=1e-4 * scale)


# ---------------------------------------------------------------------------------------------
# notation


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_notation_round_trips(block_type: str, kernel: str, flags: str) -> None:
    gene = _gene(block_type, kernel, flags)
    token = _canonical(block_type, kernel, flags)
    assert str(gene) == token
    assert BlockGene.parse(token) == gene

    g = _in_context(gene)
    text = str(g)
    assert text == f"r32-stem16-conv_k3_c16-ds_k3x5_c16-{token}-head64"
    assert Genotype.parse(text) == g
    assert str(Genotype.parse(text)) == text
    # JSON, both as a dict and through a JSON string (as records store it)
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_json(json.dumps(g.to_json())) == g
    assert BlockGene.from_dict(json.loads(json.dumps(gene.to_dict()))) == gene


def test_docstring_example_holds() -> None:
    (test,) = doctest.DocTestFinder(recurse=False).find(
        Genotype, "Genotype", globs={"Genotype": Genotype}
    )
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
    assert result.attempted == 3
    assert result.failed == 0


def test_documented_examples_parse() -> None:
    """The notation examples in the module docstring and the README are valid genotypes."""
    import edgenas.arch._genotype as module

    readme = Path(__file__).resolve().parent.parent / "README.md"
    texts = [module.__doc__ or "", readme.read_text()]
    examples = {m for t in texts for m in re.findall(r"\br\d+-stem\d+-[\w-]+?-head\d+\b", t)}
    assert examples
    for text in examples:
        assert str(Genotype.parse(text)) == text


def test_flag_order_and_defaults_are_canonicalised() -> None:
    g = Genotype.parse("r64-stem8-conv_se_c16_k3_s1-res_k3_c16_id")
    assert str(g) == "r64-stem8-conv_k3_c16_se-res_k3_c16-head0"
    assert g.blocks[1].residual  # a ResNet block always has its shortcut
    assert Genotype.parse(" r64-stem8-ir_k5_e1_c8 ").blocks[0] == BlockGene("ir", 8, (5, 5))


def test_shapes_follow_strides_and_channels() -> None:
    g = Genotype.parse("r65-stem8-ir_k3_e6_c16_s2-ds_k5x3_c24-conv_k3_c32_s2-head128")
    assert g.stem_size == 33
    assert [(s.in_channels, s.in_size, s.out_channels, s.out_size) for s in g.shapes()] == [
        (8, 33, 16, 17),
        (16, 17, 24, 17),
        (24, 17, 32, 9),
    ]
    assert g.final_channels == 128
    assert g.final_size == 9
    assert len(g) == 3


def test_long_skips_only_where_sizes_match() -> None:
    assert Genotype.parse("r32-stem8-conv_k3_c8-conv_k3_c8_l2-conv_k3_c8_s2")  # stem 16×16 → 16×16
    for bad in ("r32-stem8-conv_k3_c8-conv_k3_c8-conv_k3_c8_s2_l2",  # 16×16 into 8×8
                "r32-stem8-conv_k3_c8_l2"):  # fmt: skip  # reaches before the stem
        with pytest.raises(GenotypeError):
            Genotype.parse(bad)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("r32-stem8-foo_k3_c8", ["'foo'", "unknown", "conv, res, bneck, ds, ir"]),
        ("r32-stem8-conv_k4_c8", ["'4'", "odd"]),
        ("r32-stem8-conv_k5x2_c8", ["'5x2'", "odd"]),
        ("r32-stem8-conv_k3", ["conv_k3", "channel count"]),
        ("r32-stem8-conv_k3_c16_s2_id", ["conv_k3_c16_s2_id", "identity residual needs stride 1"]),
        ("r32-stem8-conv_k3_c16_id", ["identity residual", "8 in, 16 out"]),
        ("r32-stem8-conv_k3_c8-conv_k3_c16_s2_l2", ["conv_k3_c16_s2_l2", "16×16 to 8×8"]),
        ("r32-stem8-conv_k3_c8_l3", ["before the stem"]),
        ("r32-stem8-conv_k3_c8_l4", ["skip span", "4"]),
        ("r32-stem8-conv_k3_c8_zz", ["'zz'", "not understood"]),
        ("r32-stem8-ds_k3_e4_c8", ["expansion", "ir blocks only"]),
        ("r32-stem8-ir_k3_e9_c8", ["expansion", "1–8"]),
        ("r32-stem8-ir_k3_c8_s3", ["stride must be 1 or 2"]),
        ("r32-stem8-conv-k3-c8", ["'conv'", "channel count"]),
        ("stem8-conv_k3_c8", ["resolution", "r96-stem16"]),
        ("r32-conv_k3_c8", ["stem", "stem16"]),
        ("r4-stem8-conv_k3_c8", ["resolution must be ≥ 8"]),
        ("", ["must start with the resolution"]),
    ],
)
def test_malformed_notation_is_explained(text: str, fragments: list[str]) -> None:
    with pytest.raises(GenotypeError) as info:
        Genotype.parse(text)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)  # callers that catch ValueError keep working


def test_json_missing_field_is_a_genotype_error() -> None:
    data = Genotype.parse("r32-stem8-conv_k3_c8").to_json()
    del data["stem"]
    with pytest.raises(GenotypeError, match="stem"):
        Genotype.from_json(data)
    data = Genotype.parse("r32-stem8-conv_k3_c8").to_json()
    data["blocks"][0]["colour"] = "red"
    with pytest.raises(GenotypeError):
        Genotype.from_json(data)


@pytest.mark.parametrize("text", ["[]", "not json"])
def test_json_that_is_not_an_object_is_a_genotype_error(text: str) -> None:
    with pytest.raises(GenotypeError):
        Genotype.from_json(text)


# ---------------------------------------------------------------------------------------------
# every registered block and baseline: build, train a step, export, run in ONNX Runtime


def test_registry_covers_every_block_type() -> None:
    assert set(BLOCKS) == set(BLOCK_TYPES)


@pytest.mark.parametrize("block_type", sorted(BLOCKS))
def test_every_block_describes_the_operations_it_builds(block_type: str) -> None:
    """The operations a block type describes (what the costs and the latency predictor read)
    hold exactly the parameters of the modules it builds, and one activation module per
    operation marked with it."""
    rng = np.random.default_rng(5)
    for _ in range(30):
        expansion = int(rng.integers(1, 7)) if block_type == "ir" else 1
        kernel = (int(rng.choice([1, 3, 5])), int(rng.choice([3, 5, 7])))
        in_channels, out = int(rng.choice([8, 16, 24])), int(rng.choice([8, 16, 40]))
        stride = int(rng.choice([1, 2]))
        gene = BlockGene(block_type, out, kernel, stride, expansion, bool(rng.random() < 0.5),
                         str(rng.choice(["relu", "hswish"])))  # fmt: skip
        block = BLOCKS[block_type](in_channels, gene)
        ops = block_operations(gene, in_channels, 16)
        assert sum(op.weights for op in ops.all_convs()) == sum(
            p.numel() for p in block.parameters()
        ), gene
        marked = sum(op.act for op in ops.convs) + bool(ops.add and ops.add.act)
        assert marked == sum(isinstance(m, torch.nn.Hardswish | torch.nn.ReLU)
                             for m in block.modules() if m is not getattr(block.se, "act", None)), gene  # fmt: skip
        assert ops.convs[-1].out_size == (16 + stride - 1) // stride


@pytest.mark.parametrize("block_type", sorted(BLOCKS))
def test_every_block_runs_its_operations_at_its_input_or_output_size(block_type: str) -> None:
    """A block's operations at one input size are those at another with the sizes changed, each
    the block's input or output size (the latency predictor describes a block once for all
    sizes)."""
    for stride in (1, 2):
        gene = BlockGene(block_type, 24, (3, 5), stride, 3 if block_type == "ir" else 1, True,
                         "hswish")  # fmt: skip
        sizes = {}
        for size in (16, 23):
            out = (size + stride - 1) // stride
            ops = block_operations(gene, 16, size)
            ranks = {size: "in", out: "out"}
            convs = [(c.in_channels, c.out_channels, c.kernel, c.stride, c.groups,
                      ranks[c.in_size]) for c in ops.all_convs() if not c.bias]  # fmt: skip
            other = [ranks[op.size] for op in (*ops.path, ops.add) if op is not None
                     and not isinstance(op, ConvOp)]  # fmt: skip
            sizes[size] = (convs, other, ops.act)
        assert sizes[16] == sizes[23], gene


@pytest.mark.parametrize("se", [False, True], ids=["plain", "se"])
@pytest.mark.parametrize("block_type", sorted(BLOCKS))
def test_every_block_builds_trains_and_exports(block_type: str, se: bool) -> None:
    e = "_e3" if block_type == "ir" else ""
    flag = "_se" if se else ""
    ident = "" if block_type in ("res", "bneck") else "_id"
    # A strided block that changes channels (projected shortcut for res/bneck), then one with an
    # identity shortcut and hard-swish, both with an asymmetric kernel.
    g = Genotype.parse(
        f"r32-stem8-{block_type}_k5x3{e}_c16_s2{flag}-{block_type}_k3x5{e}_c16{flag}_hs{ident}-head32"
    )
    model = build_model(g)
    assert [type(b) for b in model.blocks] == [BLOCKS[block_type]] * 2
    _train_step(model)
    _assert_onnx_matches(model)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_builds_trains_and_exports(name: str) -> None:
    g = BASELINES[name](0.25, 64)
    assert g.resolution == 64
    assert Genotype.parse(str(g)) == g
    model = build_model(g)
    _train_step(model)
    _assert_onnx_matches(model)


def test_long_skips_with_projection_run_and_export() -> None:
    # block 2 takes the stem (8 channels, projected), block 3 block 1's output (16, projected),
    # block 4 block 2's output (24 channels, identity)
    g = Genotype.parse(
        "r32-stem8-conv_k3_c16-ds_k3_c16_id-ir_k3_e2_c24_l3-conv_k5x3_c24_se_l2-ds_k3_c24_l2-head0"
    )
    model = build_model(g)
    assert sorted(model.skips) == ["2", "3", "4"]
    assert "skips.2.conv.weight" in model.state_dict()
    assert model.skips["2"].conv.in_channels == 8
    assert model.skips["3"].conv.in_channels == 16
    assert isinstance(model.skips["4"], torch.nn.Identity)
    _train_step(model)
    _assert_onnx_matches(model)


def test_skip_changes_the_output() -> None:
    """A long skip is really added: the same weights with the skip removed give other logits."""
    with_skip = build_model("r32-stem8-conv_k3_c8-conv_k3_c8-conv_k3_c8_l2")
    without = build_model("r32-stem8-conv_k3_c8-conv_k3_c8-conv_k3_c8")
    without.load_state_dict(with_skip.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(with_skip.eval()(x), without.eval()(x))


def test_build_model_options() -> None:
    model = build_model("r32-stem8-ds_k3_c16", in_channels=1, num_classes=4, mean=[0.3], std=[0.2])
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 4)
    assert model.normalize.mean.flatten().tolist() == pytest.approx([0.3])
    with pytest.raises(GenotypeError):
        build_model("r32-stem8-ds_k4_c16")


def test_export_writes_the_file_and_keeps_training_mode(tmp_path: Path) -> None:
    model = build_model("r32-stem8-ir_k3_e2_c16_s2")
    model.train()
    path = tmp_path / "sub" / "model.onnx"
    data = export_onnx(model, path)
    assert model.training
    assert path.read_bytes() == data
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_baseline_by_name_and_width() -> None:
    assert baseline("mobilenetv2:0.5") == BASELINES["mobilenetv2"](0.5, 96)
    assert baseline(" ResNet ", resolution=64) == BASELINES["resnet"](1.0, 64)
    narrow, wide = baseline("vgg:0.5"), baseline("vgg:2")
    assert all(a.out_channels < b.out_channels for a, b in zip(narrow, wide, strict=True))
    assert all(b.out_channels % 8 == 0 for b in baseline("mobilenetv3-small:0.3"))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("efficientnet", "mobilenetv2, mobilenetv3-small, resnet, vgg"),
        ("mobilenetv2:wide", "'wide' is not a number"),
        ("mobilenetv2:10", "0.05–4"),
        ("mobilenetv2:0", "0.05–4"),
    ],
)
def test_bad_baseline_is_a_config_error(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        baseline(spec)
    assert fragment in str(info.value)
    assert repr(spec) in str(info.value)
