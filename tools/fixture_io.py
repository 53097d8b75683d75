"""fixture_io.py: what the fixture generators of tools/ share: the default ../shared path and the
JSON writer (indented, UTF-8 kept as is, a final newline, so regenerated fixtures diff cleanly)."""
import json
import os

SHARED_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
