"""Rewrite ``file_seconds.json`` (seconds per test file, read by ``tests/conftest.py`` to start the longest files
first) from a whole-suite run's junit xml:

    bash scripts/test.sh -q --junitxml=/tmp/suite.xml && python tests/support/file_seconds.py /tmp/suite.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

TABLE = Path(__file__).with_name("file_seconds.json")


def main(junit_xml: str) -> None:
    seconds: Counter[str] = Counter()
    for case in ET.parse(junit_xml).iter("testcase"):
        module = case.get("classname", "").split(".")
        if len(module) >= 2 and module[0] == "tests":
            seconds[f"tests/{module[1]}.py"] += float(case.get("time") or 0.0)
    table = {name: round(s) for name, s in seconds.most_common() if round(s) >= 3}  # shorter files keep their order
    TABLE.write_text(json.dumps(table, indent=0) + "\n")
    print(f"{TABLE}: {len(table)} files, {sum(table.values())} s in all")


if __name__ == "__main__":
    main(sys.argv[1])
