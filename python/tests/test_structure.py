"""Architecture: key names, shapes and parameter counts against the official definitions."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dosod_tools.model.checkpoint import count_parameters, reparameterise_state_dict  # noqa: E402
from dosod_tools.model.config import PRESETS, make_divisible, make_round, preset  # noqa: E402
from dosod_tools.model.model import DosodDetector  # noqa: E402

H = "bbox_head.head_module."


@pytest.mark.parametrize("size,published", [("s", 11.48e6), ("m", 26.31e6), ("l", 44.19e6)])
def test_reparameterised_counts_match_paper(size: str, published: float) -> None:
    sd = DosodDetector(preset(size)).state_dict()
    rep = reparameterise_state_dict(sd, torch.zeros(80, 512))
    assert abs(count_parameters(rep) / published - 1) <= 0.005
    assert not any(".text_mlp." in k for k in rep)
    assert rep[H + "cls_contrasts.1.conv.weight"].shape == (80, 512, 1, 1)
    assert rep[H + "cls_contrasts.1.conv.bias"].shape == (80,)


def test_mmyolo_rounding_rules() -> None:
    assert make_divisible(64, 0.25) == 16 and make_divisible(1024, 0.5) == 512 and make_divisible(768, 0.75) == 576
    assert make_divisible(64, 0.125) == 8
    assert [make_round(n, 0.33) for n in (3, 6)] == [1, 2]
    assert [make_round(n, 0.67) for n in (3, 6)] == [2, 4]
    assert make_round(1, 0.33) == 1


def test_s_keys_and_shapes() -> None:
    sd = DosodDetector(preset("s")).state_dict()
    expect = {
        "backbone.stem.conv.weight": (32, 3, 3, 3),
        "backbone.stem.bn.running_var": (32,),
        "backbone.stem.bn.num_batches_tracked": (),
        "backbone.stage1.0.conv.weight": (64, 32, 3, 3),
        "backbone.stage1.1.main_conv.conv.weight": (64, 64, 1, 1),
        "backbone.stage1.1.blocks.0.conv1.conv.weight": (32, 32, 3, 3),
        "backbone.stage1.1.final_conv.conv.weight": (64, 96, 1, 1),
        "backbone.stage2.1.blocks.1.conv2.bn.bias": (64,),
        "backbone.stage4.1.final_conv.conv.weight": (512, 768, 1, 1),
        "backbone.stage4.2.conv1.conv.weight": (256, 512, 1, 1),
        "backbone.stage4.2.conv2.conv.weight": (512, 1024, 1, 1),
        "neck.top_down_layers.0.main_conv.conv.weight": (256, 768, 1, 1),
        "neck.top_down_layers.1.main_conv.conv.weight": (128, 384, 1, 1),
        "neck.downsample_layers.0.conv.weight": (128, 128, 3, 3),
        "neck.bottom_up_layers.0.final_conv.conv.weight": (256, 384, 1, 1),
        "neck.bottom_up_layers.1.main_conv.conv.weight": (512, 768, 1, 1),
        H + "cls_preds.0.0.conv.weight": (128, 128, 3, 3),
        H + "cls_preds.1.0.conv.weight": (128, 256, 3, 3),
        H + "cls_preds.2.1.bn.weight": (128,),
        H + "cls_preds.2.2.weight": (512, 128, 1, 1),
        H + "reg_preds.2.0.conv.weight": (64, 512, 3, 3),
        H + "reg_preds.0.2.weight": (64, 64, 1, 1),
        H + "reg_preds.0.2.bias": (64,),
        H + "cls_contrasts.0.bias": (),
        H + "cls_contrasts.0.logit_scale": (),
        H + "text_mlp.0.0.weight": (512, 512),
        H + "text_mlp.1.0.weight": (512, 512),
        H + "text_mlp.2.weight": (512, 512),
        H + "text_mlp.2.bias": (512,),
    }
    for key, shape in expect.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    # Nothing beyond the official modules: no proj buffer, no reduce/out layers with weights.
    assert not any(k.endswith(".proj") for k in sd)
    assert not any(k.startswith(("neck.reduce_layers", "neck.out_layers", "neck.upsample_layers")) for k in sd)
    assert len([k for k in sd if "blocks" in k and k.startswith("backbone.")]) == 6 * 2 * 6  # 6 bottlenecks


def test_contrast_initial_values_and_order() -> None:
    head = DosodDetector(preset("n")).head
    names = [n for n, _ in head.cls_contrasts[0].named_parameters()]
    assert names == ["bias", "logit_scale"]
    assert head.cls_contrasts[0].logit_scale.item() == -1.0
    order = [k.split(".")[0] for k in head.state_dict()]
    assert order.index("cls_preds") < order.index("reg_preds") < order.index("cls_contrasts") < order.index("text_mlp")


@pytest.mark.parametrize(
    "layers,keys",
    [
        (1, ["text_mlp.0.weight", "text_mlp.0.bias"]),
        (2, ["text_mlp.0.0.weight", "text_mlp.0.0.bias", "text_mlp.1.weight", "text_mlp.1.bias"]),
        (
            3,
            [
                "text_mlp.0.0.weight",
                "text_mlp.0.0.bias",
                "text_mlp.1.0.weight",
                "text_mlp.1.0.bias",
                "text_mlp.2.weight",
                "text_mlp.2.bias",
            ],
        ),
    ],
)
def test_text_mlp_layouts(layers: int, keys: list[str]) -> None:
    head = DosodDetector(preset("n", text_mlp_layers=layers, text_dim=384)).head
    got = [k for k in head.state_dict() if k.startswith("text_mlp.")]
    assert got == keys
    assert head.state_dict()[keys[0]].shape == (512, 384)


def test_minilm_width_adaptor() -> None:
    model = DosodDetector(preset("n", text_dim=384))
    out = model.encode_text(torch.randn(7, 384))
    assert out.shape == (7, 512)


def test_training_vs_reparameterised_class_width() -> None:
    n = PRESETS["n"]
    assert n.neck_channels[0] == 32 and n.head_cls_width == 80  # max(in_channels[0], 80)
    assert PRESETS["s"].head_cls_width == 128
    rep = DosodDetector(n.with_(cls_width=n.neck_channels[0]), rep_classes=80)
    assert rep.state_dict()[H + "cls_preds.0.0.conv.weight"].shape == (32, 32, 3, 3)
    assert not any("text_mlp" in k for k in rep.state_dict())
