"""Write the real-digits data set (scikit-learn's bundled UCI optdigits) in the LLaVA format.

    python scripts/sklearn_digits.py [OUT]      # default OUT: data/sklearn_digits

What it writes and why: ``eaglesearch/data/digits.py``. experiments/small_real.yaml reads the default folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eaglesearch.data.digits import MANIFEST, DigitsSpec, write_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="data/sklearn_digits", type=Path)
    args = parser.parse_args()
    root = write_digits(args.out, DigitsSpec())
    manifest = json.loads((root / MANIFEST).read_text())
    print(f"{root}: {manifest['train_images']} training and {manifest['eval_images']} evaluation images "
          f"({manifest['source']})")


if __name__ == "__main__":
    main()
