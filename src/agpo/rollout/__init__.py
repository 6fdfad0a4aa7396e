"""agpo.rollout"""
