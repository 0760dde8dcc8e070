#!/usr/bin/env python3
"""Validate ONNX files with the reference checker: `python3 scripts/check_onnx.py FILE...`.

Runs onnx.checker.check_model(model, full_check=True), which also runs strict shape inference, and prints one
JSON line per file: {"path", "ok", "error", "onnx_version", "ir_version", "opset"}. With --node-types first, each
line also has "node_types": {node name: element type of its first output, as onnx's shape inference types it},
e.g. "FLOAT16". Exit status 1 if any fails, 2 if the onnx package is missing.
"""
import json
import sys

try:
    import onnx
except ImportError as e:  # pragma: no cover
    print(json.dumps({"ok": False, "error": f"python onnx package missing: {e}"}))
    sys.exit(2)


def node_types(model):
    """Node name -> the element type onnx's shape inference gives its first output."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.output) + list(g.input)}
    return {n.name: onnx.TensorProto.DataType.Name(types.get(n.output[0], 0)) for n in g.node}


args = sys.argv[1:]
with_types = bool(args) and args[0] == "--node-types"
if with_types:
    args = args[1:]
failed = False
for path in args:
    result = {"path": path, "ok": True, "error": None, "onnx_version": onnx.__version__}
    try:
        model = onnx.load(path)
        result["ir_version"] = model.ir_version
        result["opset"] = [[o.domain or "ai.onnx", o.version] for o in model.opset_import]
        onnx.checker.check_model(model, full_check=True)
        if with_types:
            result["node_types"] = node_types(model)
    except Exception as e:  # noqa: BLE001 - report any checker failure
        result["ok"] = False
        result["error"] = f"{type(e).__name__}: {e}"
        failed = True
    print(json.dumps(result))
sys.exit(1 if failed else 0)
