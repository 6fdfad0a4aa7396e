"""Faults and bad input a hostile but fair user causes in training (issue 14): each is caught
with one line naming the file or flag, and nothing the user had is changed."""

from __future__ import annotations

import copy
import math
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agpo.errors import UserError
from agpo.io import DirLock
from agpo.train.checkpoint import checkpoint_dirs
from agpo.train.cli import main
from agpo.train.config import RunConfig, load_config, read_yaml
from agpo.train.metrics import MetricSums, advantage_metrics
from agpo.train.update import SkipCounter, TrainBatch, UpdateSpec, group_advantages, update
from agpo.algos.advantages import ADVANTAGES, AdvantageConfig


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


def _strict_rows(path: Path) -> list[dict]:
    """metrics.jsonl parsed as strict JSON (a bare NaN or Infinity fails)."""
    def refuse(name: str) -> None:
        raise AssertionError(f"bare {name} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


# --- 1. an unusable gold answer: the group leaves the loss, counted ---------------------------


def test_group_advantages_leave_out_unusable_groups():
    # REINFORCE: +1 correct, −1 wrong. Group 0 has an unusable gold (its 0s are not rewards):
    # advantage 0 and keep False; group 1 gets the estimator's values [+1, −1].
    scores = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    out = group_advantages(scores, torch.tensor([False, True]), "reinforce", AdvantageConfig())
    assert out.advantages.tolist() == [[0.0, 0.0], [1.0, -1.0]]
    assert out.keep.tolist() == [[False, False], [True, True]]
    # the statistics see group 1 only: pos_sum 1, neg_sum −1
    assert float(out.stats["pos_sum"]) == 1.0 and float(out.stats["neg_sum"]) == -1.0


@pytest.fixture
def bad_gold_task(tmp_path) -> Path:
    # The label verifier's set is {7, 8}: a gold of 9 cannot be graded (failure bad_gold).
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"{i}+1=", "gold": "9"}) + "\n"
                            for i in range(16)))
    return path


def test_bad_gold_items_are_not_trained_on(base_flags, seven_model_dir, bad_gold_task, tmp_path,
                                           read_metrics):
    out = tmp_path / "run"
    flags = [*base_flags, "--task.spec", str(bad_gold_task), "--reward.verifier", "label",
             "--reward.labels", "7", "8", "--algo.advantage", "reinforce", "--train.steps", "1"]
    assert main(["--out", str(out), *flags]) == 0
    # Under REINFORCE every response of an ungradable item would get −1 and be pushed down;
    # skipped, nothing is trained and the weights are the initial ones.
    before = load_file(str(seven_model_dir / "model.safetensors"))
    after = _weights(out / "checkpoints" / "step_1")
    assert all(torch.equal(before[k], after[k]) for k in after)
    row = read_metrics(out)[0]
    assert row["reward/bad_gold"] == 8  # all 8 groups of the step
    assert "reward/mean" not in row  # a mean over no gradable group is not 0
    assert "rollout/entropy" not in row  # not measured (no forward ran): not logged as 0.0


# --- 2. adv/* over every process's groups -----------------------------------------------------


def test_advantage_metrics_of_two_halves_equal_the_whole():
    # Two processes with one group each; their reduced adv/ metrics equal those of one process
    # holding both groups. GRPO: group [1, 0] → ±0.5 / (0.5 + 1e-6) ≈ ±1; group [1, 1] → 0.
    scores = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    cfg = AdvantageConfig()
    whole = ADVANTAGES.get("grpo")(scores, cfg)
    halves = [ADVANTAGES.get("grpo")(scores[i : i + 1], cfg) for i in range(2)]
    parts = [advantage_metrics(h.stats, h.keep, world=2) for h in halves]
    summed = MetricSums()
    for pairs, _ in parts:
        summed.add_pairs(pairs)  # what all_reduce does
    got = summed.reduce(lambda x: x)
    one = MetricSums()
    one.add_pairs(advantage_metrics(whole.stats, whole.keep, world=1)[0])
    want = one.reduce(lambda x: x)
    assert got == pytest.approx(want)
    assert got["adv/pos_sum"] == pytest.approx(1.0, rel=1e-5)  # rank 0 alone and the sum agree here …
    assert got["adv/frac_all_equal"] == pytest.approx(0.5)  # … but rank 0 alone would say 0


def test_metric_sums_count_a_shared_value_once_and_leave_out_empty_means():
    # Two processes, summed as all_reduce does: a per-process mean pools both; a value every
    # process holds (an optimizer step's LR) counts once; a mean over nothing and a -inf maximum
    # (nothing measured) are left out rather than logged as 0.
    ranks = [MetricSums(main=True), MetricSums(main=False)]
    for m, (total, count) in zip(ranks, [(3.0, 1.0), (5.0, 3.0)], strict=True):
        m.add("reward/mean", total, count)
        m.once("loss/lr", torch.tensor(0.1))
        m.add("rollout/entropy", 0.0, 0.0)
        m.peak("adv/abs_max", torch.tensor(-math.inf))
    summed = MetricSums()
    for m in ranks:
        summed.add_pairs(m.pairs)
        summed.add_peaks(m.peaks)
    got = summed.reduce(lambda x: x, lambda x: x)
    assert got == {"reward/mean": 2.0, "loss/lr": pytest.approx(0.1)}  # (3 + 5) / (1 + 3)


# --- 5. non-finite loss or gradient: skipped, counted, stopped ---------------------------------


def _tiny_batch(model, tokenizer) -> TrainBatch:
    from agpo.rollout import SamplingConfig, sample

    g = torch.Generator().manual_seed(0)
    r = sample(model, tokenizer, ["1+2="] * 4, torch.ones(4), SamplingConfig(max_new_tokens=3), g)
    return TrainBatch(r, r.temperatures, r.logprobs, None, torch.tensor([1.0, -1.0, float("nan"), 0.5]),
                      r.response_mask, torch.full((4,), 0.2), torch.full((4,), 0.2))


def test_a_non_finite_step_leaves_weights_and_optimizer_untouched(tiny_model, tiny_tokenizer):
    model = copy.deepcopy(tiny_model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = UpdateSpec(objective="pg", aggregation="token_mean", kl_estimator="k1", kl_coef=0.0,
                      entropy_coef=0.0, max_len=3, epochs=2, mini_batches=1, micro_batch_size=4,
                      group_size=4, grad_clip=1.0)
    skips = SkipCounter(limit=3)
    stats = update(model, opt, _tiny_batch(model, tiny_tokenizer), spec, skips=skips).stats.reduce()
    assert stats["loss/skipped_steps"] == 2 and skips.run == 2  # both epochs' steps skipped
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert opt.state_dict()["state"] == {}  # Adam never stepped: no moments
    with pytest.raises(UserError, match="NaN/inf in 3 optimizer steps in a row"):
        update(model, opt, _tiny_batch(model, tiny_tokenizer), spec, skips=skips)


def test_a_diverging_run_stops_with_finite_checkpoints_and_strict_json(base_flags, tmp_path):
    out = tmp_path / "run"
    flags = [*base_flags, "--algo.advantage", "reinforce", "--optim.lr", "1e30", "--optim.grad-clip",
             "0", "--train.steps", "8", "--train.checkpoint-every", "1", "--train.keep-checkpoints", "0",
             "--train.max-skipped-steps", "2"]
    with pytest.raises(UserError, match="NaN/inf in 2 optimizer steps in a row"):
        main(["--out", str(out), *flags])
    rows = _strict_rows(out / "metrics.jsonl")
    assert rows and len(rows) < 8  # stopped early
    assert all("loss/skipped_steps" in r for r in rows)
    for _, ckpt in checkpoint_dirs(out):
        assert all(torch.isfinite(t).all() for t in _weights(ckpt).values()), ckpt


@pytest.mark.parametrize("flag", [["--rollout.temperature", "nan"], ["--optim.lr", "nan"],
                                  ["--reward.timeout-s", "nan"]])
def test_nan_flags_are_refused_before_anything_is_written(base_flags, tmp_path, flag, capsys):
    out = tmp_path / "run"
    # agpo's one-line UserError, or tyro's error box (exit 2) where a section still raises a
    # ValueError while tyro builds it (the reward section); both name the flag.
    with pytest.raises((UserError, SystemExit)) as err:
        main(["--out", str(out), *base_flags, *flag])
    one_line = isinstance(err.value, UserError)
    message = str(err.value) if one_line else capsys.readouterr().err
    assert one_line or err.value.code == 2
    assert one_line or flag[0].startswith("--reward.")  # agpo's own sections: one line
    assert flag[0] in message
    assert not out.exists()


# --- 6. config.yaml on resume --------------------------------------------------------------------


def _two_step_run(base_flags, tmp_path) -> Path:
    out = tmp_path / "run"
    assert main(["--out", str(out), *base_flags, "--train.steps", "2", "--train.checkpoint-every", "1",
                 "--train.keep-checkpoints", "0"]) == 0
    return out


def test_a_cut_or_empty_config_yaml_is_refused_not_replaced_by_defaults(base_flags, tmp_path):
    out = _two_step_run(base_flags, tmp_path)
    text = (out / "config.yaml").read_text()
    lines = text.splitlines(keepends=True)
    cases = [
        ("".join(lines[: len(lines) // 2]), r"config\.yaml: cut"),  # cut at a line
        (text[: len(text) // 2], r"config\.yaml(:\d+)?: "),  # cut anywhere: refused, named
        ("", r"config\.yaml: empty"),
    ]
    for damaged, msg in cases:
        (out / "config.yaml").write_text(damaged)
        with pytest.raises(UserError, match=msg):
            main(["--resume", str(out), "--train.steps", "3"])
        assert (out / "config.yaml").read_text() == damaged  # left as it was, not rewritten


def test_an_edited_config_yaml_must_agree_with_its_checkpoint(base_flags, tmp_path):
    out = _two_step_run(base_flags, tmp_path)
    path = out / "config.yaml"
    path.write_text(path.read_text().replace("lr: 0.01", "lr: 1.0e-06"))  # base_flags: lr 1e-2
    with pytest.raises(UserError, match=r"run_config\.json.*optim\.lr.*--optim\.lr"):
        main(["--resume", str(out), "--train.steps", "3"])
    # The same change given as a flag is deliberate: accepted, and config.yaml records it.
    assert main(["--resume", str(out), "--train.steps", "3", "--optim.lr", "1e-6"]) == 0
    assert read_yaml(path, complete=True).optim.lr == 1e-6


# --- 7. a damaged checkpoint: the newest intact one is used, saying so -------------------------


def test_a_truncated_checkpoint_falls_back_to_the_newest_intact_one(base_flags, tmp_path, capsys):
    full = tmp_path / "full"
    flags = [*base_flags, "--train.steps", "3", "--train.checkpoint-every", "1",
             "--train.keep-checkpoints", "0"]
    assert main(["--out", str(full), *flags]) == 0
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    model = cut / "checkpoints" / "step_3" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])  # a copy that stopped early
    assert main(["--resume", str(cut)]) == 0
    err = capsys.readouterr().err
    assert "resuming from step_2" in err and "step_3/model.safetensors: damaged" in err
    a, b = _weights(full / "checkpoints" / "step_3"), _weights(cut / "checkpoints" / "step_3")
    assert all(torch.equal(a[k], b[k]) for k in a)  # step 3 redone from step 2: the same weights


def test_no_intact_checkpoint_is_an_error_naming_the_file(base_flags, tmp_path):
    out = _two_step_run(base_flags, tmp_path)
    for _, ckpt in checkpoint_dirs(out):
        (ckpt / "trainer_state.json").write_text("{")
    with pytest.raises(UserError, match=r"no intact checkpoint.*trainer_state\.json: damaged"):
        main(["--resume", str(out)])


# --- 8. prompt lengths --------------------------------------------------------------------------


@pytest.mark.parametrize("chars", [300, 2_000_000])
def test_a_prompt_longer_than_the_model_is_refused_naming_file_and_line(base_flags, tmp_path, chars):
    # The seven model has 256 positions; 1 new token leaves 255 for the prompt (one character
    # per token). 2 MB is refused before tokenizing (more than 64 characters per position).
    task = tmp_path / "long.jsonl"
    task.write_text(json.dumps({"id": "a", "prompt": "1+1=", "gold": "7"}) + "\n"
                    + json.dumps({"id": "b", "prompt": "1" * chars, "gold": "7"}) + "\n")
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"long\.jsonl:2: problem 'b'.*255"):
        main(["--out", str(out), *base_flags, "--task.spec", str(task), "--train.steps", "1"])
    assert not out.exists()


# --- 9. one process per run directory -----------------------------------------------------------


def test_a_run_directory_in_use_is_refused(base_flags, tmp_path):
    out = _two_step_run(base_flags, tmp_path)
    lock = DirLock(out, "test")  # what a running `agpo train --resume` holds
    try:
        with pytest.raises(UserError, match="another agpo process is writing"):
            main(["--resume", str(out), "--train.steps", "3"])
    finally:
        lock.release()
    assert main(["--resume", str(out), "--train.steps", "3"]) == 0  # the lock is gone with it
    assert len(checkpoint_dirs(out)) == 3


def test_a_run_that_fails_to_start_unlocks_its_directory_at_once(base_flags, tmp_path, monkeypatch):
    # The fresh run's --out lock is taken before the reward is built; a start failing there
    # releases it at once, even while the caught exception (whose traceback holds the frames)
    # is still referenced.
    import agpo.rewards

    def broken(cfg):  # noqa: ANN001, ANN202
        raise RuntimeError("reward crashed")

    out = tmp_path / "run"
    monkeypatch.setattr(agpo.rewards, "build_reward", broken)
    with pytest.raises(RuntimeError, match="reward crashed") as failed:
        main(["--out", str(out), *base_flags, "--train.steps", "1"])
    assert (out / "config.yaml").exists()  # it failed after taking the lock
    DirLock(out, "test").release()  # free now: this would raise "another agpo process is writing"
    assert failed.value.__traceback__ is not None


# --- 10. --out that is a file -------------------------------------------------------------------


def test_out_that_is_a_file_is_refused(base_flags, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(UserError, match="is a file"):
        main(["--out", str(f), *base_flags])
    assert f.read_text() == "mine"


# --- 11. a torn metrics line ---------------------------------------------------------------------


def test_resume_repairs_a_torn_last_metrics_line(base_flags, tmp_path, read_metrics):
    out = _two_step_run(base_flags, tmp_path)
    shutil.rmtree(out / "checkpoints" / "step_2")
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "reward/me')  # killed mid-write
    assert main(["--resume", str(out)]) == 0
    assert [r["step"] for r in read_metrics(out)] == [1, 2]


# --- 12. YAML field types ------------------------------------------------------------------------


@pytest.mark.parametrize("yaml_text, msg", [
    ("train:\n  seed: xyz\n", r"c\.yaml:2: train\.seed: expected an integer, got the string 'xyz'"),
    ("train:\n  steps: 2.5\n", r"c\.yaml:2: train\.steps: expected an integer, got 2\.5"),
    ("log:\n  progress: 'false'\n", r"c\.yaml:2: log\.progress: expected true or false"),
    ("optim:\n  lr: '1e-3'\n", r"c\.yaml:2: optim\.lr: expected a number, got the string '1e-3'"),
    ("optim:\n  lr: .nan\n", r"c\.yaml:2: optim\.lr: expected a number, got NaN"),
    ("optim:\n  betas: [0.9]\n", r"c\.yaml:2: optim\.betas: expected a list of 2 values"),
    ("model:\n  dtype: fp16\n", r"c\.yaml:2: model\.dtype: the string 'fp16' is not one of"),
])
def test_yaml_values_are_checked_against_field_types(tmp_path, yaml_text, msg):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(UserError, match=msg):
        load_config(path, [])


def test_yaml_reads_what_a_user_means(tmp_path):
    path = tmp_path / "c.yaml"
    # 1e-3 unquoted is a string to YAML 1.1; 1 and 2 as labels are the strings "1", "2".
    path.write_text("optim:\n  lr: 1e-3\nreward:\n  labels: [1, 2]\nlog:\n  wandb_project: null\n")
    cfg = load_config(path, [])
    assert cfg.optim.lr == 0.001 and cfg.reward.labels == ("1", "2")
    assert cfg.log.wandb_project is None and isinstance(cfg, RunConfig)


def test_a_whole_config_yaml_from_before_a_field_existed_resumes(base_flags, tmp_path):
    out = _two_step_run(base_flags, tmp_path)
    path = out / "config.yaml"
    # A run written before --train.max-skipped-steps existed: the field keeps its default.
    path.write_text("".join(ln for ln in path.read_text().splitlines(keepends=True)
                            if "max_skipped_steps" not in ln))
    assert main(["--resume", str(out), "--train.steps", "3"]) == 0
