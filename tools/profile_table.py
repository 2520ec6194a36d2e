"""Write the feature x profile table of docs/profiles.md from the shipped profile files.

    python tools/profile_table.py          # print the table
    python tools/profile_table.py --write  # replace it in docs/profiles.md (between the markers)

tests/test_profile_docs.py fails when the doc's table and the TOML files disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nfpjit.offload.profile import builtin_profiles, feature_table, load_profile

DOC = Path(__file__).resolve().parent.parent / "docs" / "profiles.md"
BEGIN = "<!-- profile-table: begin (tools/profile_table.py --write) -->"
END = "<!-- profile-table: end -->"
ORDER = ("nfp-kernel", "default", "permissive")  # the real card, our NIC, research


def table() -> str:
    names = [n for n in ORDER if n in builtin_profiles()] + [n for n in builtin_profiles() if n not in ORDER]
    return feature_table([load_profile(n) for n in names])


def with_table(doc: str) -> str:
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[:start] + "\n" + table() + doc[end:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the table in docs/profiles.md")
    args = ap.parse_args(argv)
    if not args.write:
        sys.stdout.write(table())
        return 0
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        sys.stderr.write(f"profile_table: error: {DOC} has no table markers ({BEGIN} ... {END})\n")
        return 1
    DOC.write_text(with_table(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
