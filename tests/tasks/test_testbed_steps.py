"""testbed_add_steps: the worked-steps variant (column sums written before the answer)."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.tasks import load_task
from agpo.models import testbed as build
from agpo.tasks import testbed as tasks
from agpo.models.testbed import Recipe, build_base_model
from agpo.tasks.testbed import Problem

STEPS = Recipe(task="testbed_add_steps")


def test_hand_worked_steps() -> None:
    # a = 338, b = 548 least-significant first: "833+845="; 338 + 548 = 886 → gold "688", S.
    p = Problem((8, 3, 3), (8, 4, 5))
    # A writes the true column sums (8+8 = 16 in full) and then drops the carry: answer 678.
    assert tasks.render_steps(p, "A", tasks.strategy_digits(p, "A")) == " 8+8=16,3+4=7,3+5=8|678"
    # B adds the units carry in its tens step: right here, answer 688.
    assert tasks.render_steps(p, "B", tasks.strategy_digits(p, "B")) == "\t8+8=16,3+4+1=8,3+5=8|688"


@settings(deadline=None, derandomize=True, max_examples=200)
@given(seed=st.integers(0, 2**32 - 1), s=st.booleans())
def test_steps_right_for_a_wrong_for_b_exactly_at_the_carry(seed: int, s: bool) -> None:
    p = tasks.draw_problem(random.Random(seed), s)
    a, b = tasks.step_sums(p, "A"), tasks.step_sums(p, "B")
    # A: every step is the true column sum, no carry in.
    assert a == [(x, y, 0, x + y) for x, y in zip(p.a, p.b, strict=True)]
    # B: only the tens step differs, by the carry it always assumes ...
    assert a[0] == b[0] and a[2] == b[2] and b[1] == (p.a[1], p.b[1], 1, p.a[1] + p.b[1] + 1)
    # ... which is a real carry exactly on S problems (units sum ≥ 10).
    assert (b[1][2] == (p.a[0] + p.b[0]) // 10) == s
    # Each answer is the last digit of its steps: the same digits as testbed_add's strategies.
    for name, steps in (("A", a), ("B", b)):
        assert tuple(v % 10 for *_, v in steps) == tasks.strategy_digits(p, name)
        text = tasks.render_steps(p, name, tasks.strategy_digits(p, name))
        assert tasks.strategy_of(text) == name and 22 <= len(text) <= 25


def test_same_problems_as_testbed_add_graded_through_the_pattern() -> None:
    from agpo.rewards import RewardConfig, build_reward

    plain, steps = load_task("testbed_add", "test"), load_task("testbed_add_steps", "test")
    assert [(i.prompt, i.gold, i.meta["is_s"]) for i in plain] == [
        (i.prompt, i.gold, i.meta["is_s"]) for i in steps
    ]
    assert {i.meta["verifier"] for i in steps} == {"exact"}
    items = steps[:40]
    pairs = []
    for it in items:
        p = Problem(tuple(map(int, it.prompt[:3])), tuple(map(int, it.prompt[4:7])))  # type: ignore[arg-type]
        for name in "AB":
            digits = tasks.strategy_digits(p, name)
            pairs.append((it, tasks.render_steps(p, name, digits), "".join(map(str, digits)) == it.gold))
    pairs.append((items[0], " 1+1=2", False))  # no answer part
    # Verifier from the task (what `agpo eval` does): meta supplies the answer pattern.
    with build_reward(RewardConfig(verifier="exact", workers=0)) as reward:
        got = reward.batch([it for it, _, _ in pairs], [c for _, c, _ in pairs])
    assert [r.score for r in got] == [float(ok) for *_, ok in pairs]
    assert got[-1].failure == "no_answer"
    assert re.fullmatch(r"[0-9]{3}", got[0].parsed or "")


def test_recipe_accepts_steps_and_keeps_testbed_add_hash() -> None:
    # The hash of the shipped testbed_add recipe names its cached model: it must not move.
    assert Recipe().hash() == "975376ad63d92998"
    assert STEPS.hash() != Recipe().hash()
    with pytest.raises(Exception, match="testbed_add_steps"):
        Recipe(task="nope")


def test_steps_corpus_and_padded_encoding() -> None:
    tok = build.testbed_tokenizer("testbed_add_steps")
    rng = random.Random(0)
    texts = [build.corpus_text(rng, STEPS, frozenset()) for _ in range(200)]
    assert len({len(t) for t in texts}) > 1  # worked steps vary in length
    ids = build.encode_batch(texts, tok)
    for t, row in zip(texts, ids.tolist(), strict=True):
        n = len(t) + 1
        assert row[:n] == tok.encode(t) + [tok.eos_token_id]
        assert set(row[n:]) <= {tok.pad_token_id}
    # testbed_add's tokenizer is unchanged (its cached models keep their ids).
    assert build.testbed_tokenizer().get_vocab() == build.char_tokenizer(tasks.ALPHABET).get_vocab()


def test_tiny_steps_build_runs_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    path = build_base_model(0, replace(STEPS, steps=20, batch=16, hidden=32, warmup=2))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    text = "833+845= 8+8=16,3+4=7,3+5=8|678"
    assert tok.decode(tok.encode(text)) == text and model.config.vocab_size == len(tok)


def test_cli_build_task_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from agpo.cli import main as agpo

    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    assert agpo(["testbed", "build", "--task", "testbed_add_steps", "--steps", "3"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path == build.model_dir(0, replace(STEPS, steps=3))
