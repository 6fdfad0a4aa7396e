"""Build tests/rewards/data/math_verify_heldout.jsonl from math-verify's own test suite.

The cases (gold, prediction, expected verdict) are read as data out of the ``parametrize``
lists of huggingface/Math-Verify's tests with ``ast.literal_eval``: no code of theirs is run or
copied. Only tests that grade with math-verify's defaults are taken (precision 6, strict,
no set-relation comparison); each row records its file, test and the extraction targets that
test used. Run with the path of a Math-Verify checkout and the commit it is at:

    python scripts/build_math_verify_heldout.py /path/to/Math-Verify COMMIT
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

FILES = ("test_all.py", "test_numina_cases.py", "test_open_thoughts.py", "test_boxed.py",
         "test_yujianll.py")


def cases(path: Path):  # noqa: ANN201
    tree = ast.parse(path.read_text())
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        args = [a.arg for a in fn.args.args]
        if args not in (["gold", "pred", "expected"], ["gold", "pred", "result"]):
            continue  # tests with extra knobs (precision, set relations) are not default grading
        calls = [c for c in ast.walk(fn) if isinstance(c, ast.Call)]
        kwargs = {k.arg: k.value for c in calls for k in c.keywords}
        if set(kwargs) - {"match_types"}:
            continue
        targets = ast.literal_eval(kwargs["match_types"]) if "match_types" in kwargs else ["latex", "expr"]
        for dec in fn.decorator_list:
            if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize":
                for row in ast.literal_eval(dec.args[1]):
                    gold, pred, expected = row[:3]
                    yield {"gold": gold, "pred": pred, "expected": bool(expected),
                           "source": f"huggingface/Math-Verify tests/{path.name}::{fn.name}",
                           "targets": targets}


def main(repo: str, commit: str) -> None:
    out = Path(__file__).resolve().parents[1] / "tests" / "rewards" / "data" / "math_verify_heldout.jsonl"
    rows, seen = [], set()
    for name in FILES:
        for row in cases(Path(repo) / "tests" / name):
            key = (row["gold"], row["pred"])
            if key not in seen:
                seen.add(key)
                rows.append({**row, "commit": commit})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} cases → {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
