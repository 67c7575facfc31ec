"""ONNX lowering (cosma.core.onnx_lower) on small hand-built graphs: folding, views, kinds,
sizes, overrides, operation counts, and every kind of bad input."""

from __future__ import annotations

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from cosma.core.analysis import is_topological
from cosma.core.errors import ModelError, UsageError
from cosma.core.hardware import get_hardware
from cosma.core.ir import Problem, TensorKind
from cosma.core.onnx_lower import load_model, lower, parse_input_shape

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def value(name: str, shape, elem_type: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def weight(name: str, shape, elem_type: int = FLOAT) -> onnx.TensorProto:
    """An initializer whose data is external and absent, as in the weight-stripped zoo."""
    t = onnx.TensorProto(name=name, data_type=elem_type, dims=shape)
    t.data_location = TensorProto.EXTERNAL
    for key, val in (("location", "absent.bin"), ("offset", "0"), ("length", "0")):
        entry = t.external_data.add()
        entry.key, entry.value = key, val
    return t


def ints(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, INT64, [len(values)], values)


def model(nodes, inputs, outputs, initializers=(), opset: int = 17, name: str = "g") -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def problem(graph) -> Problem:
    hw = get_hardware("ideal")
    return Problem(graph, hw.capacity, hw)


def conv_with_views() -> onnx.ModelProto:
    """x -> Conv -> c; the new shape of c is computed from Shape(c); then three views of c
    (Reshape, Identity, Flatten) feed one Relu::

        x[1,3,4,4] --Conv(W)--> c[1,8,2,2] --Reshape/Identity/Flatten--> view of c --Relu--> y[1,32]
                               Shape(c) -> Gather(0) -> Concat(-1) -> new shape   (folded)
    """
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="const0", value=ints("zero_v", [0])),
        helper.make_node("Gather", ["s", "zero"], ["batch"], name="gather"),
        helper.make_node("Concat", ["batch", "minus_one"], ["new_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["c", "new_shape"], ["r"], name="reshape"),
        helper.make_node("Identity", ["r"], ["r2"], name="identity"),
        helper.make_node("Flatten", ["r2"], ["r3"], name="flatten"),
        helper.make_node("Relu", ["r3"], ["y"], name="relu"),
    ]
    return model(
        nodes,
        [value("x", [1, 3, 4, 4]), value("unused_input", [7])],
        [value("y", None)],
        [weight("W", [8, 3, 3, 3]), ints("minus_one", [-1]), weight("unused_weight", [5])],
    )


# --------------------------------------------------------------------------- folding and views


def test_folding_and_alias_chain():
    g = lower(conv_with_views())
    assert [(op.name, op.op_type) for op in g.operators] == [("conv", "Conv"), ("relu", "Relu")]
    conv, relu = g.operators
    assert conv.inputs == ("x", "W") and conv.outputs == ("c",)
    assert relu.inputs == ("c",)  # three views resolved to the storage tensor
    how = {f.onnx_node: (f.how, f.alias_of) for f in g.folded}
    assert how == {
        "shape": ("folded", ""),
        "const0": ("folded", ""),
        "gather": ("folded", ""),
        "concat": ("folded", ""),
        "reshape": ("alias", "c"),
        "identity": ("alias", "c"),
        "flatten": ("alias", "c"),
    }
    assert is_topological(problem(g), [op.name for op in g.operators])


def test_kinds_sizes_and_dropped_tensors():
    g = lower(conv_with_views())
    assert set(g.tensors) == {"x", "W", "c", "y"}  # unused input/weight and shape constants dropped
    kinds = {t: g.tensors[t].kind for t in g.tensors}
    assert kinds == {
        "x": TensorKind.INPUT,
        "W": TensorKind.WEIGHT,
        "c": TensorKind.ACTIVATION,
        "y": TensorKind.OUTPUT,
    }
    sizes = {t: g.tensors[t].size for t in g.tensors}
    assert sizes == {"x": 1 * 3 * 4 * 4 * 4, "W": 8 * 3 * 3 * 3 * 4, "c": 8 * 2 * 2 * 4, "y": 32 * 4}
    assert g.tensors["y"].shape == (1, 32) and g.tensors["y"].dtype_bytes == 4


def test_dtype_bytes_overrides_every_tensor():
    g = lower(conv_with_views(), dtype_bytes=1)
    assert {t: g.tensors[t].size for t in g.tensors} == {"x": 48, "W": 216, "c": 32, "y": 32}
    assert all(t.dtype_bytes == 1 for t in g.tensors.values())


def test_output_through_a_view_makes_the_activation_an_output():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Reshape", ["a", "shape"], ["y"], name="reshape"),
        helper.make_node("Sigmoid", ["a"], ["z"], name="sigmoid"),
    ]
    m = model(nodes, [value("x", [2, 3])], [value("y", [6]), value("z", [2, 3])], [ints("shape", [6])])
    g = lower(m)
    assert g.tensors["a"].kind is TensorKind.OUTPUT
    assert "y" not in g.tensors and g.tensors["z"].kind is TensorKind.OUTPUT
    assert [op.name for op in g.operators] == ["relu", "sigmoid"]


def test_folded_constants_feeding_real_operators_become_weights():
    nodes = [
        helper.make_node("Constant", [], ["k"], name="k", value=helper.make_tensor("kv", FLOAT, [4], [1.0] * 4)),
        helper.make_node("Transpose", ["W"], ["Wt"], name="transpose_w", perm=[1, 0]),
        helper.make_node("Add", ["x", "k"], ["a"], name="add"),
        helper.make_node("MatMul", ["a", "Wt"], ["y"], name="matmul"),
    ]
    m = model(nodes, [value("x", [2, 4])], [value("y", [2, 3])], [weight("W", [3, 4])])
    g = lower(m)
    assert g.tensors["k"].kind is TensorKind.WEIGHT and g.tensors["k"].size == 16
    assert g.tensors["Wt"].kind is TensorKind.WEIGHT and g.tensors["Wt"].shape == (4, 3)
    assert "W" not in g.tensors  # read only by the folded Transpose
    assert {f.onnx_node for f in g.folded} == {"k", "transpose_w"}


def test_operator_inputs_distinct_and_names_unique():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="dup"),
        helper.make_node("Reshape", ["a", "shape"], ["a_view"], name="view"),
        helper.make_node("Add", ["a", "a_view"], ["b"], name="dup"),  # same storage twice
        helper.make_node("Mul", ["b", "b"], ["y"]),  # no name
    ]
    m = model(nodes, [value("x", [2, 3])], [value("y", [2, 3])], [ints("shape", [2, 3])])
    g = lower(m)
    assert [op.name for op in g.operators] == ["dup", "dup_2", "Mul_3"]
    assert g.operators[1].inputs == ("a",) and g.operators[2].inputs == ("b",)
    assert [op.onnx_node for op in g.operators] == ["dup", "dup", "Mul_3"]  # as in the file (if named)


def test_dropout_is_a_view_and_zero_size_constant_operands_are_left_out():
    nodes = [
        helper.make_node("Dropout", ["x"], ["d"], name="dropout"),
        helper.make_node("Resize", ["d", "roi", "scales"], ["y"], name="resize", mode="nearest"),
    ]
    m = model(
        nodes,
        [value("x", [1, 1, 2, 2])],
        [value("y", [1, 1, 4, 4])],
        [helper.make_tensor("roi", FLOAT, [0], []), helper.make_tensor("scales", FLOAT, [4], [1, 1, 2, 2])],
    )
    g = lower(m)
    assert [op.op_type for op in g.operators] == ["Resize"]
    assert g.operators[0].inputs == ("x", "scales")


def test_file_element_types():
    nodes = [
        helper.make_node("Cast", ["x"], ["h"], name="to_half", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["h"], ["i"], name="to_int64", to=INT64),
        helper.make_node("Cast", ["i"], ["y"], name="to_int4", to=TensorProto.INT4),
    ]
    m = model(nodes, [value("x", [3, 5])], [value("y", [3, 5], TensorProto.INT4)], opset=21)
    g = lower(m)
    assert [g.tensors[t].size for t in ("x", "h", "i", "y")] == [60, 30, 120, 8]  # int4: 15 * 4 bits -> 8 bytes


# --------------------------------------------------------------------------- input shapes


def dynamic_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return model(nodes, [value("x", ["N", 3, "H", 8])], [value("y", ["N", 4, "H", 8])], [weight("W", [4, 3, 3, 3])])


def test_dynamic_input_names_the_option():
    with pytest.raises(ModelError, match=r"--input-shape x=1x3x1x8") as info:
        lower(dynamic_model())
    assert "'x'" in str(info.value) and "\n" not in str(info.value)


def test_input_shapes_override():
    g = lower(dynamic_model(), input_shapes={"x": (2, 3, 5, 8)})
    assert g.tensors["x"].shape == (2, 3, 5, 8)
    assert g.tensors["y"].shape == (2, 4, 5, 8) and g.tensors["y"].size == 2 * 4 * 5 * 8 * 4
    # overriding a static input re-infers the shapes the file recorded
    again = lower(lower_input_model(), input_shapes={"x": (4, 6)})
    assert again.tensors["y"].shape == (4, 6)


def lower_input_model() -> onnx.ModelProto:
    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [value("x", [2, 3])], [value("y", [2, 3])])
    m.graph.value_info.append(value("y", [2, 3]))
    return m


def test_input_shapes_that_break_a_fixed_view():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Reshape", ["a", "shape"], ["r"], name="flat"),
        helper.make_node("Neg", ["r"], ["y"], name="neg"),
    ]
    m = model(nodes, [value("x", [2, 3])], [value("y", [6])], [ints("shape", [6])])
    assert lower(m).tensors["y"].size == 24
    with pytest.raises(ModelError, match=r"'flat' \(Reshape\) turns \[4, 3\] into \[6\]"):
        lower(m, input_shapes={"x": (4, 3)})


def test_input_shapes_bad_name():
    with pytest.raises(UsageError, match="not a graph input"):
        lower(dynamic_model(), input_shapes={"nope": (1,)})


def test_parse_input_shape():
    assert parse_input_shape("x=1x3x224x224") == ("x", (1, 3, 224, 224))
    assert parse_input_shape("a=b=2X3") == ("a=b", (2, 3))
    for bad in ("x", "=1x2", "x=1xax2", "x=0x3"):
        with pytest.raises(UsageError):
            parse_input_shape(bad)


# --------------------------------------------------------------------------- operation counts


def macs_of(nodes, inputs, outputs, initializers=()) -> dict[str, int]:
    return {op.name: op.macs for op in lower(model(nodes, inputs, outputs, initializers)).operators}


def test_macs():
    macs = macs_of(
        [
            helper.make_node("Conv", ["x", "Wd"], ["c"], name="depthwise", group=4, pads=[1, 1, 1, 1]),
            helper.make_node("ConvTranspose", ["c", "Wt"], ["u"], name="deconv", strides=[2, 2]),
            helper.make_node("Relu", ["u"], ["y"], name="relu"),
        ],
        [value("x", [1, 4, 5, 5])],
        [value("y", None)],
        [weight("Wd", [4, 1, 3, 3]), weight("Wt", [4, 2, 2, 2])],
    )
    assert macs["depthwise"] == (4 * 5 * 5) * (1 * 3 * 3)  # output elements x (C_in/groups x kernel)
    assert macs["deconv"] == (4 * 5 * 5) * (2 * 2 * 2)  # input elements x (C_out/groups x kernel)
    assert macs["relu"] == 2 * 10 * 10  # element-wise estimate: output elements

    macs = macs_of(
        [
            helper.make_node("MatMul", ["a", "B"], ["m"], name="batched"),
            helper.make_node("Gemm", ["g", "G"], ["n"], name="gemm", transA=1),
        ],
        [value("a", [2, 4, 8]), value("g", [8, 4])],
        [value("m", None), value("n", None)],
        [weight("B", [8, 16]), weight("G", [8, 16])],
    )
    assert macs["batched"] == 2 * 4 * 16 * 8  # batch x M x N x K
    assert macs["gemm"] == 4 * 16 * 8  # transA: A is K x M


# --------------------------------------------------------------------------- bad input


def one_line_error(exc_info) -> str:
    text = str(exc_info.value)
    assert text and "\n" not in text
    return text


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such file") as info:
        load_model(tmp_path / "absent.onnx")
    one_line_error(info)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x12this is not a model")
    with pytest.raises(ModelError, match="garbage.onnx") as info:
        load_model(path)
    one_line_error(info)


def test_text_file_is_not_a_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello")
    with pytest.raises(ModelError) as info:
        load_model(path)
    one_line_error(info)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.97])
def test_truncated_file(tmp_path, fraction):
    data = conv_with_views().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError) as info:
        load_model(path)
    one_line_error(info)


def test_valid_file_round_trip(tmp_path):
    path = tmp_path / "Conv_Views.onnx"
    onnx.save(conv_with_views(), path)
    g = load_model(path)
    assert g.name == "Conv_Views" and len(g.operators) == 2
    assert load_model(path, name="other").name == "other"


def test_control_flow_is_rejected():
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["out"])], "branch", [], [value("out", [2])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
        helper.make_node("If", ["cond"], ["y"], name="the_if", then_branch=branch, else_branch=branch),
    ]
    m = model(nodes, [value("x", [2])], [value("y", [2])], [helper.make_tensor("zero", FLOAT, [], [0.0])])
    with pytest.raises(ModelError, match="'the_if'.*control flow") as info:
        lower(m)
    one_line_error(info)


def test_loop_is_rejected():
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [value("i", [], INT64), value("c_in", [], TensorProto.BOOL), value("v_in", [2])],
        [value("c_out", [], TensorProto.BOOL), value("v_out", [2])],
    )
    nodes = [helper.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)]
    m = model(nodes, [value("x", [2])], [value("y", [2])], [ints("trip", [3])])
    with pytest.raises(ModelError, match="'loop'.*Loop"):
        lower(m)


def test_zero_size_tensor():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [value("x", [1, 0, 4])], [value("y", None)])
    with pytest.raises(ModelError, match="'x'.*zero size") as info:
        lower(m)
    one_line_error(info)


@pytest.mark.parametrize("domain", ["", "com.example"])
def test_unknown_operator(domain):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("FancyOp", ["a"], ["y"], name="fancy", domain=domain),
    ]
    m = model(nodes, [value("x", [2, 2])], [value("y", None)])
    if domain:
        m.opset_import.append(helper.make_opsetid(domain, 1))
    with pytest.raises(ModelError, match="unsupported operator 'FancyOp' \\(node 'fancy'") as info:
        lower(m)
    one_line_error(info)


def test_data_dependent_shape():
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="nonzero"), helper.make_node("Neg", ["idx"], ["y"])]
    m = model(nodes, [value("x", [3, 3])], [value("y", None, INT64)])
    with pytest.raises(ModelError, match="'idx'.*nonzero.*dynamic"):
        lower(m)


def test_empty_graph_and_nothing_to_schedule(tmp_path):
    with pytest.raises(ModelError, match="empty graph"):
        lower(model([], [value("x", [2])], [value("x", [2])]))
    path = tmp_path / "empty.onnx"
    onnx.save(model([], [value("x", [2])], [value("x", [2])]), path)
    with pytest.raises(ModelError, match="no ONNX graph"):
        load_model(path)
    only_views = model([helper.make_node("Identity", ["x"], ["y"], name="id")], [value("x", [2])], [value("y", [2])])
    with pytest.raises(ModelError, match="no operator left"):
        lower(only_views)


def test_undefined_tensor_is_malformed():
    m = model([helper.make_node("Relu", ["ghost"], ["y"], name="relu")], [value("x", [2])], [value("y", [2])])
    with pytest.raises(ModelError, match="'relu'.*'ghost'"):
        lower(m)


def test_local_functions_are_inlined():
    fn = helper.make_function(
        "local", "DoubleRelu", ["a"], ["b"],
        [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Relu", ["t"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    m = model([helper.make_node("DoubleRelu", ["x"], ["y"], name="call", domain="local")], [value("x", [4])],
              [value("y", None)])  # fmt: skip
    m.opset_import.append(helper.make_opsetid("local", 1))
    m.functions.append(fn)
    g = lower(m)
    assert [op.op_type for op in g.operators] == ["Relu", "Relu"]
    assert g.tensors["y"].kind is TensorKind.OUTPUT and g.tensors["y"].size == 16


def test_lower_leaves_the_model_unchanged():
    m = dynamic_model()
    before = m.SerializeToString()
    lower(m, input_shapes={"x": (1, 3, 4, 8)})
    assert m.SerializeToString() == before


# --------------------------------------------------------------------------- property


VIEWS = ("Identity", "Flatten", "Reshape")
COMPUTE = ("Relu", "Sigmoid", "Add")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(VIEWS + COMPUTE), st.integers(0, 1000)), min_size=1, max_size=12))
def test_random_chains_views_vanish(steps):
    """A random mix of views and element-wise operators on one [2, 12] tensor: every
    compute node becomes one operator, every view vanishes, and operators read only
    tensors that exist (the input or an operator's result)."""
    nodes, names, compute = [], ["x"], 0
    for i, (op_type, pick) in enumerate(steps):
        out = f"t{i}"
        if op_type == "Add":
            nodes.append(helper.make_node("Add", [names[-1], names[pick % len(names)]], [out], name=f"n{i}"))
        elif op_type == "Reshape":
            nodes.append(helper.make_node("Reshape", [names[-1], "shape"], [out], name=f"n{i}"))
        elif op_type == "Flatten":
            nodes.append(helper.make_node("Flatten", [names[-1]], [out], name=f"n{i}", axis=1))
        else:
            nodes.append(helper.make_node(op_type, [names[-1]], [out], name=f"n{i}"))
        compute += op_type in COMPUTE
        names.append(out)
    m = model(nodes, [value("x", [2, 12])], [value(names[-1], None)], [ints("shape", [2, 12])])
    if compute == 0:
        with pytest.raises(ModelError, match="no operator left"):
            lower(m)
        return
    g = lower(m)
    assert len(g.operators) == compute
    assert len(g.folded) == len(steps) - compute and all(f.how == "alias" for f in g.folded)
    assert all(t.size == 2 * 12 * 4 for t in g.tensors.values())
    produced = {t for op in g.operators for t in op.outputs}
    for op in g.operators:
        assert set(op.inputs) <= produced | {"x"}
    outputs = [t for t in g.tensors.values() if t.kind is TensorKind.OUTPUT]
    assert len(outputs) == 1 and outputs[0].name in g.producer
    assert is_topological(problem(g), [op.name for op in g.operators])


# --------------------------------------------------------------------------- dynamic batch


def batch_model(first_dim) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return model(nodes, [value("x", [first_dim, 3, 8])], [value("y", [first_dim, 3, 8])], [])


@pytest.mark.parametrize("first_dim", ["N", -1, None])
def test_batch_fixes_a_symbolic_leading_dim_and_says_so(first_dim):
    said = []
    g = lower(batch_model(first_dim), batch=2, notify=said.append)
    assert g.tensors["x"].shape == (2, 3, 8) and g.tensors["y"].shape == (2, 3, 8)
    assert len(said) == 1 and "'x'" in said[0] and "fixed to 2" in said[0]
    assert lower(batch_model(first_dim), notify=None).tensors["x"].shape == (1, 3, 8)  # default batch 1


def test_batch_none_leaves_the_dim_and_input_shapes_win():
    with pytest.raises(ModelError, match="--input-shape x=1x3x8"):
        lower(batch_model("N"), batch=None)
    said = []
    assert lower(batch_model("N"), input_shapes={"x": (5, 3, 8)}, notify=said.append).tensors["x"].shape == (5, 3, 8)
    assert said == []  # nothing was fixed by --batch
    assert lower(dynamic_model(), input_shapes={"x": (2, 3, 5, 8)}, notify=said.append).tensors["x"].shape[0] == 2


@pytest.mark.parametrize("bad", [0, -1, 3, True])
def test_dtype_bytes_is_checked_once_for_every_caller(bad):
    from cosma.core.errors import UsageError

    with pytest.raises(UsageError, match="1, 2, 4 or 8"):
        lower(batch_model(1), dtype_bytes=bad)
