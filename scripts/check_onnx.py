#!/usr/bin/env python3
"""Validate ONNX files with the reference checker: `python3 scripts/check_onnx.py FILE...`.

Runs onnx.checker.check_model(model, full_check=True), which also runs strict shape inference, and prints one
JSON line per file: {"path", "ok", "error", "onnx_version", "ir_version", "opset"}. Exit status 1 if any fails,
2 if the onnx package is missing.
"""
import json
import sys

try:
    import onnx
except ImportError as e:  # pragma: no cover
    print(json.dumps({"ok": False, "error": f"python onnx package missing: {e}"}))
    sys.exit(2)

failed = False
for path in sys.argv[1:]:
    result = {"path": path, "ok": True, "error": None, "onnx_version": onnx.__version__}
    try:
        model = onnx.load(path)
        result["ir_version"] = model.ir_version
        result["opset"] = [[o.domain or "ai.onnx", o.version] for o in model.opset_import]
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - report any checker failure
        result["ok"] = False
        result["error"] = f"{type(e).__name__}: {e}"
        failed = True
    print(json.dumps(result))
sys.exit(1 if failed else 0)
