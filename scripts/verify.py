"""`make verify`: the tracked outputs in the workspace (after a fresh `dvc repro --force`) against
the committed ones. Prints how many fits are identical, the fits that differ and why, and exits
non-zero if a conclusion of the report differs (backprop/lab/verify.py holds the logic).

    python scripts/verify.py [--against HEAD]
"""

import argparse
import fnmatch
import subprocess
import sys
from pathlib import Path

from backprop.lab.verify import verify

# The tracked outputs that hold fits and conclusions (cache: false in dvc.yaml, so git has them).
PATTERNS = ("metrics/*.json", "sweeps/*/results.csv", "sweeps/*/summary.csv")


def tracked(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in PATTERNS)


def committed(rev: str) -> dict[str, str]:
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "--", "metrics", "sweeps"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        path: subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True).stdout
        for path in listing
        if tracked(path)
    }


def workspace() -> dict[str, str]:
    paths = [p.as_posix() for folder in ("metrics", "sweeps") for p in Path(folder).rglob("*") if p.is_file()]
    return {path: Path(path).read_text() for path in sorted(paths) if tracked(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", default="HEAD", help="the commit whose outputs are the reference")
    args = parser.parse_args()
    result = verify(committed(args.against), workspace())
    print("\n".join(result.lines()))
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
