"""Export the model zoo as weight-stripped ONNX files (optional tooling; CI never runs it).

The committed files under ``models/zoo/`` and ``models/nas/`` keep every tensor's name,
element type and dims, but no weight bytes: the optimizer needs shapes only, and a
stripped NASNet-A Large is under 1 MB instead of 356 MB. Regenerate them offline in a
throwaway environment (torchvision needs a newer torch than the project pins)::

    python3 -m venv /tmp/exportenv
    /tmp/exportenv/bin/pip install torch==2.14.1 torchvision==0.29.1 onnx onnxscript
    /tmp/exportenv/bin/pip install --no-deps timm safetensors huggingface_hub pyyaml
    /tmp/exportenv/bin/python models/export_zoo.py            # every model
    /tmp/exportenv/bin/python models/export_zoo.py resnet50   # some of them
    python models/zoo_stats.py > models/stats.md              # then refresh the table

Every network is built with random weights (no download), batch 1, in eval mode, and
exported with the dynamo exporter (``dynamo=True``), which gives fully static shapes.
Stripping keeps small integer tensors inline (shape arguments of ``Reshape``, ``Slice``,
``Expand``...): ONNX shape inference needs their values to give static shapes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))

# Integer tensors at most this many bytes stay inline: they are shapes and indices.
KEEP_INT_BYTES = 4096
_INT_TYPES = {
    onnx.TensorProto.INT64,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.BOOL,
}
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


@dataclass(frozen=True)
class Entry:
    """One zoo model: how to build it and what it is fed."""

    name: str  # file name without extension (lowercase)
    folder: str  # "zoo" or "nas"
    build: Callable[[], object]  # returns a torch.nn.Module in eval mode
    inputs: tuple[tuple[int, ...], ...]  # input shapes, batch 1
    source: str  # one line for models/README.md
    dtype: str = "float"  # "float" or "long" (token ids)


# --------------------------------------------------------------------------- weight stripping


def strip_weights(model: onnx.ModelProto) -> int:
    """Move every tensor's bytes out of the model (marked external, in a file that never
    exists) except small integer tensors. Returns the number of tensors stripped."""
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    stripped, offset = 0, 0
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        nbytes = math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        if tensor.data_type in _INT_TYPES and nbytes <= KEEP_INT_BYTES:
            continue
        for field in _DATA_FIELDS:
            tensor.ClearField(field)
        del tensor.external_data[:]
        for key, value in (("location", "stripped_weights.bin"), ("offset", str(offset)), ("length", str(nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensor.data_location = onnx.TensorProto.EXTERNAL
        offset += nbytes
        stripped += 1
    return stripped


def drop_metadata(model: onnx.ModelProto) -> None:
    """Remove the exporter's per-node metadata (stack traces, module paths) and doc strings:
    most of a stripped file's bytes, and nothing the optimizer reads."""
    del model.metadata_props[:]
    graph = model.graph
    for item in (*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del item.metadata_props[:]
        item.doc_string = ""
    graph.doc_string = ""


def randomize(module) -> None:
    """Draw every parameter and normalization statistic at random: with freshly initialized
    zero biases and identity batch norms, the exporter's optimizer would fold away tensors
    (a fused Conv bias, a LayerNorm bias) that a trained network keeps."""
    import torch

    with torch.no_grad():
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean") or not tensor.any():
                tensor.normal_(0.0, 0.1)


def export(entry: Entry, out_root: str) -> str:
    import torch

    torch.manual_seed(0)
    module = entry.build()
    module.eval()
    randomize(module)
    if entry.dtype == "long":
        args = tuple(torch.randint(0, 1000, shape) for shape in entry.inputs)
    else:
        args = tuple(torch.randn(shape) for shape in entry.inputs)
    with torch.no_grad():
        program = torch.onnx.export(module, args, dynamo=True, optimize=True, verbose=False)
    proto = program.model_proto
    proto.graph.name = entry.name
    drop_metadata(proto)
    strip_weights(proto)
    os.makedirs(os.path.join(out_root, entry.folder), exist_ok=True)
    path = os.path.join(out_root, entry.folder, f"{entry.name}.onnx")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return path


# --------------------------------------------------------------------------- model builders


def _torchvision(fn_name: str, **kwargs) -> Callable[[], object]:
    def build():
        import torchvision.models as tvm
        import torchvision.models.segmentation as seg
        import torchvision.models.video as video

        for namespace in (tvm, seg, video):
            if hasattr(namespace, fn_name):
                return getattr(namespace, fn_name)(weights=None, **kwargs)
        raise KeyError(fn_name)

    return build


def _segmentation(fn_name: str) -> Callable[[], object]:
    """Segmentation models return a dict; export its ``out`` tensor only."""

    def build():
        import torch

        inner = _torchvision(fn_name, weights_backbone=None, aux_loss=False)()

        class OutOnly(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)["out"]

        return OutOnly()

    return build


def _timm(name: str) -> Callable[[], object]:
    def build():
        import timm

        return timm.create_model(name, pretrained=False)

    return build


def _transformer() -> object:
    """``torch.nn.Transformer`` defaults (d_model 512, 8 heads, 6+6 layers), source and
    target of 32 tokens, inputs already embedded."""
    import torch

    class Seq2Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = torch.nn.Transformer(d_model=512, batch_first=True)

        def forward(self, src, tgt):
            return self.transformer(src, tgt)

    return Seq2Seq()


def _gpt2() -> object:
    from models.torch_nets import GPT2

    return GPT2()


def _bert() -> object:
    from models.torch_nets import Bert

    return Bert()


def _darts() -> object:
    from models.torch_nets import DartsImageNet

    return DartsImageNet()


def _amoebanet() -> object:
    from models.torch_nets import AmoebaNetD

    return AmoebaNetD()


def _randwire(nodes: int, seed: int) -> Callable[[], object]:
    def build():
        from models.torch_nets import RandWire

        return RandWire(nodes=nodes, seed=seed)

    return build


IMAGE = ((1, 3, 224, 224),)
ZOO: tuple[Entry, ...] = (
    Entry("resnet18", "zoo", _torchvision("resnet18"), IMAGE, "torchvision resnet18"),
    Entry("resnet50", "zoo", _torchvision("resnet50"), IMAGE, "torchvision resnet50"),
    Entry("resnext50", "zoo", _torchvision("resnext50_32x4d"), IMAGE, "torchvision resnext50_32x4d"),
    Entry("densenet121", "zoo", _torchvision("densenet121"), IMAGE, "torchvision densenet121"),
    Entry("mobilenetv2", "zoo", _torchvision("mobilenet_v2"), IMAGE, "torchvision mobilenet_v2"),
    Entry("efficientnet_b0", "zoo", _torchvision("efficientnet_b0"), IMAGE, "torchvision efficientnet_b0"),
    Entry("vit_b_16", "zoo", _torchvision("vit_b_16"), IMAGE, "torchvision vit_b_16"),
    Entry(
        "transformer",
        "zoo",
        _transformer,
        ((1, 32, 512), (1, 32, 512)),
        "torch.nn.Transformer (d_model 512, 6+6 layers), 32+32 tokens",
    ),
    Entry("gpt2", "zoo", _gpt2, ((1, 128),), "GPT-2 small, plain torch (models/torch_nets.py), 128 tokens", "long"),
    Entry("bert_base", "zoo", _bert, ((1, 128),), "BERT-base, plain torch (models/torch_nets.py), 128 tokens", "long"),
    Entry("r2plus1d_18", "zoo", _torchvision("r2plus1d_18"), ((1, 3, 16, 112, 112),), "torchvision r2plus1d_18"),
    Entry("s3d", "zoo", _torchvision("s3d"), ((1, 3, 16, 224, 224),), "torchvision s3d"),
    Entry("fcn_resnet50", "zoo", _segmentation("fcn_resnet50"), IMAGE, "torchvision fcn_resnet50"),
    Entry(
        "lraspp_mobilenet_v3_large",
        "zoo",
        _segmentation("lraspp_mobilenet_v3_large"),
        IMAGE,
        "torchvision lraspp_mobilenet_v3_large",
    ),
    Entry("deeplabv3_resnet50", "zoo", _segmentation("deeplabv3_resnet50"), IMAGE, "torchvision deeplabv3_resnet50"),
    Entry("nasnetalarge", "nas", _timm("nasnetalarge"), ((1, 3, 331, 331),), "timm nasnetalarge (331x331)"),
    Entry("pnasnet5large", "nas", _timm("pnasnet5large"), ((1, 3, 331, 331),), "timm pnasnet5large (331x331)"),
    Entry("darts_v2", "nas", _darts, IMAGE, "DARTS_V2 genotype, ImageNet network (C=48, 14 cells), plain torch"),
    Entry("amoebanet_d", "nas", _amoebanet, IMAGE, "AmoebaNet-D genotype, plain torch (models/torch_nets.py)"),
    Entry("randwire_ws_n16_s0", "nas", _randwire(16, 0), IMAGE, "RandWire WS(16, 4, 0.75) seed 0, small regime"),
    Entry("randwire_ws_n32_s0", "nas", _randwire(32, 0), IMAGE, "RandWire WS(32, 4, 0.75) seed 0, small regime"),
    Entry("randwire_ws_n32_s1", "nas", _randwire(32, 1), IMAGE, "RandWire WS(32, 4, 0.75) seed 1, small regime"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to export (default: all)")
    parser.add_argument("--out", default=HERE, help="root folder (zoo/ and nas/ go under it)")
    args = parser.parse_args(argv)
    wanted = set(args.names) or {e.name for e in ZOO}
    unknown = wanted - {e.name for e in ZOO}
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    sys.path.insert(0, os.path.dirname(HERE))  # for models.torch_nets
    failed = 0
    for entry in ZOO:
        if entry.name not in wanted:
            continue
        start = time.perf_counter()
        try:
            path = export(entry, args.out)
        except Exception as e:  # noqa: BLE001 - keep going: one broken export should not stop the rest
            failed += 1
            print(f"{entry.name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
            continue
        kib = os.path.getsize(path) / 1024
        print(f"{entry.name}: {path} {kib:.0f} KiB in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
