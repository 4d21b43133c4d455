#!/usr/bin/env python3
"""Checks the JSON Schemas under graphs/schema against the files they describe.

- Every graphs/*.json and graphs/zoo/*.json must validate: model graphs against kiln.graph.schema.json,
  training specs ("format": "kiln.train/...") against kiln.train.schema.json.
- Every fixture in tests/fixtures/bad_graphs/ is either structurally malformed
  (listed in SCHEMA_REJECTS: the schema must reject it) or well-formed but
  wrong in meaning (unknown names, cycles, shape mismatches, absurd sizes...):
  the schema must accept those, since finding them is the compiler's job.
  Keeping both directions exact keeps the schema honest: neither too loose
  nor stricter than the format.

Exit status: 0 when all holds, 1 when something does not, 2 when the
jsonschema module is missing (install it with tools/setup.sh --deps).
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "graphs" / "schema"
BAD_GRAPHS = ROOT / "tests" / "fixtures" / "bad_graphs"

# Fixtures the schema must reject (structure), with the reason.
SCHEMA_REJECTS = {
    "not_json.json": "not JSON at all",
    "missing_format.json": "no \"format\"",
    "unknown_format_version.json": "\"format\" is not kiln.graph/1",
    "unknown_top_level_key.json": "unknown top-level key",
    "unknown_layer.json": "layer name not in the layer list",
    "missing_attribute.json": "dense layer without \"units\"",
    "out_of_range_attribute.json": "conv2d layer with 0 filters",
    "open_dim_not_first.json": "-1 in a dimension other than the first",
    "bad_initializer.json": "unknown initializer name",
    "node_without_name.json": "node without \"name\"",
    "op_and_layer.json": "node with both \"op\" and \"layer\"",
    "layer_unknown_attribute.json": "dense layer with an unknown key",
    "five_errors.json": "maxpool2d layer with padding \"full\"",
    # The op list and each op's attributes come from the registry (tools/gen_op_docs.py):
    "unknown_op.json": "op name not in the op list",
    "op_is_layer.json": "a layer's name used as an op",
    "unknown_attribute.json": "matmul with an attribute it does not have",
    "ill_typed_attribute.json": "matmul's transpose_b is not a bool",
}


def load_validator(schema_path):
    import jsonschema  # noqa: imported here so a missing module gets the setup hint

    schema = json.loads(schema_path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors_of(validator, path):
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    return [f"{'/' + '/'.join(map(str, err.absolute_path))}: {err.message}"
            for err in validator.iter_errors(doc)]


def main():
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        print("validate_graphs: the python3 jsonschema module is missing; run tools/setup.sh --deps "
              "(it installs python3-jsonschema)")
        return 2
    graph_validator = load_validator(SCHEMA_DIR / "kiln.graph.schema.json")
    train_schema = SCHEMA_DIR / "kiln.train.schema.json"
    train_validator = load_validator(train_schema) if train_schema.exists() else None

    failures = 0
    checked = 0
    folders = ["graphs", "graphs/zoo", "graphs/zoo/train", "graphs/experiments"]
    for path in [p for f in folders for p in sorted((ROOT / f).glob("*.json"))]:
        try:
            fmt = json.loads(path.read_text()).get("format", "")
        except (json.JSONDecodeError, AttributeError):
            fmt = ""
        validator = graph_validator
        if isinstance(fmt, str) and fmt.startswith("kiln.train"):
            if train_validator is None:
                print(f"skip  {path.relative_to(ROOT)} (no kiln.train schema yet)")
                continue
            validator = train_validator
        errs = errors_of(validator, path)
        checked += 1
        if errs:
            failures += 1
            print(f"FAIL  {path.relative_to(ROOT)} does not validate:")
            for e in errs:
                print(f"        {e}")
        else:
            print(f"ok    {path.relative_to(ROOT)}")

    fixtures = sorted(BAD_GRAPHS.glob("*.json"))
    for name in sorted(set(SCHEMA_REJECTS) - {p.name for p in fixtures}):
        failures += 1
        print(f"FAIL  SCHEMA_REJECTS lists {name}, which is not in {BAD_GRAPHS.relative_to(ROOT)}")
    for path in fixtures:
        errs = errors_of(graph_validator, path)
        checked += 1
        rel = path.relative_to(ROOT)
        if path.name in SCHEMA_REJECTS:
            if errs:
                print(f"ok    {rel} rejected ({SCHEMA_REJECTS[path.name]}): {errs[0]}")
            else:
                failures += 1
                print(f"FAIL  {rel} should be rejected by the schema ({SCHEMA_REJECTS[path.name]}) but validates")
        elif errs:
            failures += 1
            print(f"FAIL  {rel} is well-formed (its errors are semantic) but the schema rejects it:")
            for e in errs:
                print(f"        {e}")
        else:
            print(f"ok    {rel} accepted (semantic errors are the compiler's)")
    print(f"validate_graphs: {checked} files checked, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
