"""agpo.rewards"""
