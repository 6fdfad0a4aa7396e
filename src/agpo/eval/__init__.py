"""Evaluation: pass@k at large n (resumable sampling runner) and the HTML report.

    from agpo.eval import evaluate, evaluate_items, build_report
    evaluate("ckpt/", "math500", 256, "out/eval_math500", temperature=0.6, top_p=0.95)
    build_report(["out/eval_base", "out/eval_math500"], "report.html")

Names are imported lazily (PEP 562) so ``agpo passk`` (agpo.eval.passk) starts without torch.
"""

from __future__ import annotations

from agpo.lazy import lazy_exports

_EXPORTS = {
    "evaluate": "agpo.eval.cli",
    "EvalArgs": "agpo.eval.cli",
    "evaluate_items": "agpo.eval.runner",
    "build_report": "agpo.eval.report",
    "summarize_samples": "agpo.eval.summary",
}

__getattr__, __all__ = lazy_exports("agpo.eval", _EXPORTS)
