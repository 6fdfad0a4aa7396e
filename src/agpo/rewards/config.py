"""The ``reward`` section of the run config: which verifier(s), how hard the limits are, and the
knobs of each verifier. Attribute docstrings are the ``--help`` text."""

from __future__ import annotations

from dataclasses import dataclass

import regex

EXTRACTORS = ("boxed", "answer", "hash", "bare", "final")
"""Answer extractors for math, by name (see :func:`agpo.rewards.extract.extract_answer`)."""


@dataclass(frozen=True)
class RewardConfig:
    verifier: str = "math"
    """Verifier name (math | exact | label | format), or a weighted sum such as
    'math:1.0,format:0.1'. The first component supplies `parsed` and `failure`."""

    workers: int = 2
    """Worker processes for math verification. 0: in the calling main thread with a SIGALRM
    deadline, which C code that never returns to Python ignores (use >= 1 on untrusted output);
    a call from another thread then still goes to one worker process, to keep the deadline."""

    timeout_s: float = 5.0
    """Hard per-item deadline in seconds; an item past it scores 0 with failure 'timeout'."""

    cache_size: int = 65536
    """Verdicts remembered, keyed by (gold, normalised extracted answer); 0 disables."""

    bad_gold: str = "skip"
    """An unparseable gold answer: 'skip' (score 0, failure 'bad_gold': drop the item) or
    'error' (raise, naming the item)."""

    extract_order: tuple[str, ...] = EXTRACTORS
    """Answer extractors tried in order: boxed (last \\boxed{}), answer ('Answer:' / 'the
    answer is'), hash ('####'), bare (a one-line response that is only an answer), final (the
    final statement: the last sentence stating a number the question does not give). Leave
    out final to credit only marked answers (docs/grading.md)."""

    max_answer_chars: int = 1000
    """Longest extracted answer handed to the math parser; longer scores 0 ('too_long')."""

    max_response_chars: int = 20000
    """`math` verifier: a response math-verify reads whole (no single box, no '####') is cut to
    its last this many characters first; answers come at the end, and the cut bounds the work
    of a pathological response."""

    exact_pattern: str = ""
    """`exact` verifier: a regex locating the answer in the completion; the last match's group 1
    (the whole match when it has no group), stripped, is compared with the stripped gold; no
    match scores 0 ('no_answer'). Empty: the task's own meta 'exact_pattern' if it names one,
    else the whole stripped completion is the answer. Every pattern (this one, a task's, the
    label and format patterns) runs under the --reward.timeout-s deadline in CPU seconds; a
    search past it scores 0 ('timeout')."""

    labels: tuple[str, ...] = ("E", "S", "C", "I")
    """Label set of the `label` verifier, in ordinal order (e.g. 1 2 3 4 5 for a graded scale)."""

    label_pattern: str = (
        r"(?i)\b(?:label|answer|relevance|rating)\b\s*(?:is)?\s*[:=]?\s*[*(\[]*\s*({labels})\b"
    )
    """Regex locating the label in free text; '{labels}' becomes the alternation of the label
    set. The last match wins; a response that is exactly one label also counts."""

    label_reward: str = "exact"
    """'exact' (1 or 0) or 'ordinal' (1 - |predicted - gold| / (K - 1) over the label order)."""

    format_prefixes: tuple[str, ...] = ("Answer:", "####", "\\boxed{")
    """`format` verifier: the last non-empty line must start with (\\boxed{: contain) one of
    these."""

    format_require_reasoning: bool = True
    """`format` verifier: at least one non-empty line of reasoning before the answer line."""

    format_pattern: str = ""
    """`format` verifier: an extra regex the response must contain (re.search), e.g.
    '(?s)<think>.+</think>'; empty: none."""

    def __post_init__(self) -> None:
        _ = self.components  # syntax check of `verifier`
        bad = [e for e in self.extract_order if e not in EXTRACTORS]
        if bad or not self.extract_order:
            raise ValueError(
                f"--reward.extract-order {bad or '()'}: use a non-empty subset of {EXTRACTORS}"
            )
        if self.max_response_chars < 1:
            raise ValueError("--reward.max-response-chars must be ≥ 1")
        if self.workers < 0 or not 0 < self.timeout_s < float("inf") or self.cache_size < 0:
            raise ValueError(
                "--reward.workers and --reward.cache-size must be >= 0 and "
                "--reward.timeout-s a finite number > 0"
            )
        if self.bad_gold not in ("skip", "error"):
            raise ValueError(f"--reward.bad-gold {self.bad_gold!r}: use 'skip' or 'error'")
        if self.label_reward not in ("exact", "ordinal"):
            raise ValueError(
                f"--reward.label-reward {self.label_reward!r}: use 'exact' or 'ordinal'"
            )
        if len(set(self.labels)) < 2 or any(not lab.strip() for lab in self.labels):
            raise ValueError("--reward.labels: give at least two distinct non-empty labels")
        if "{labels}" not in self.label_pattern:
            raise ValueError("--reward.label-pattern must contain '{labels}' (the label group)")
        for name, pattern in (("label-pattern", self.label_regex.pattern),
                              ("format-pattern", self.format_pattern),
                              ("exact-pattern", self.exact_pattern)):
            try:
                regex.compile(pattern)
            except (regex.error, RecursionError, OverflowError) as e:
                raise ValueError(f"--reward.{name} {pattern!r}: not a regex ({e})") from None

    @property
    def components(self) -> tuple[tuple[str, float], ...]:
        """``verifier`` parsed into (name, weight) pairs: 'math' → (('math', 1.0),)."""
        out = []
        for part in self.verifier.split(","):
            name, _, weight = part.strip().partition(":")
            try:
                out.append((name.strip(), float(weight) if weight else 1.0))
            except ValueError:
                raise ValueError(
                    f"--reward.verifier {self.verifier!r}: write 'name' or "
                    "'name:weight,name:weight' (e.g. 'math:1.0,format:0.1')"
                ) from None
        if any(not name for name, _ in out):
            raise ValueError(f"--reward.verifier {self.verifier!r}: empty verifier name")
        return tuple(out)

    @property
    def label_regex(self) -> regex.Pattern[str]:
        """``label_pattern`` with the label set substituted (longest label first, escaped)."""
        alternation = "|".join(regex.escape(lab) for lab in sorted(self.labels, key=len, reverse=True))
        return regex.compile(self.label_pattern.replace("{labels}", alternation))
