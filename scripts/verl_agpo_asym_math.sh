#!/usr/bin/env bash
# AGPO-asymmetric inside verl: Qwen2.5-Math-1.5B on MATH (train 7.5k, test 5k), one node of
# 8 GPUs (80 GB class), vLLM rollouts, FSDP actor. docs/verl.md explains every choice.
#
# Prerequisites (docs/verl.md "What to download"):
#   $MODEL_DIR  Qwen/Qwen2.5-Math-1.5B from the Hugging Face Hub
#   $DATA_DIR   train.parquet / test.parquet from verl's examples/data_preprocess/math_dataset.py
# Usage: MODEL_DIR=... DATA_DIR=... [N_GPUS=8] scripts/verl_agpo_asym_math.sh [extra overrides]
# Overrides are Hydra's: later ones win, "+key=value" adds a key verl's schema lacks.
set -euo pipefail

MODEL_DIR="${MODEL_DIR:-$HOME/models/Qwen2.5-Math-1.5B}"
DATA_DIR="${DATA_DIR:-$HOME/data/math}"
N_GPUS="${N_GPUS:-8}"

# Loads agpo's estimators and loss into verl's driver and every Ray worker.
export VERL_USE_EXTERNAL_MODULES=agpo.integrations.verl

OVERRIDES=(
    algorithm.adv_estimator=agpo_asym
    +algorithm.agpo.asym_lambda_pos=1.0
    +algorithm.agpo.asym_gate=true
    +algorithm.agpo.asym_neg_const=-1.0
    +algorithm.agpo.asym_delta=0.1
    algorithm.use_kl_in_reward=false
    data.train_files="$DATA_DIR/train.parquet"
    data.val_files="$DATA_DIR/test.parquet"
    data.train_batch_size=128
    data.max_prompt_length=1024
    data.max_response_length=3072
    data.filter_overlong_prompts=true
    data.truncation=error
    actor_rollout_ref.model.path="$MODEL_DIR"
    actor_rollout_ref.model.use_remove_padding=true
    actor_rollout_ref.model.enable_gradient_checkpointing=true
    actor_rollout_ref.actor.optim.lr=2e-6
    actor_rollout_ref.actor.ppo_mini_batch_size=32
    actor_rollout_ref.actor.use_dynamic_bsz=true
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
    actor_rollout_ref.actor.policy_loss.loss_mode=agpo_ppo_clip
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.use_kl_loss=true
    actor_rollout_ref.actor.kl_loss_coef=0.001
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
    actor_rollout_ref.actor.entropy_coeff=0
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.top_p=1.0
    actor_rollout_ref.rollout.tensor_model_parallel_size=1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true
    actor_rollout_ref.rollout.val_kwargs.do_sample=true
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6
    actor_rollout_ref.rollout.val_kwargs.top_p=0.95
    actor_rollout_ref.rollout.val_kwargs.n=4
    actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true
    trainer.n_gpus_per_node="$N_GPUS"
    trainer.nnodes=1
    trainer.total_epochs=15
    trainer.save_freq=50
    trainer.test_freq=25
    trainer.val_before_train=true
    trainer.logger='["console"]'
    trainer.project_name=agpo
    trainer.experiment_name=qwen2.5-math-1.5b-math-agpo_asym
)

# AGPO_VERL_PRINT=1 prints the overrides (one per line) instead of launching; a test composes
# them with verl's own config so this recipe cannot drift from verl's schema unnoticed.
if [[ "${AGPO_VERL_PRINT:-0}" == "1" ]]; then
    printf '%s\n' "${OVERRIDES[@]}" "$@"
    exit 0
fi
exec python3 -m verl.trainer.main_ppo "${OVERRIDES[@]}" "$@"
