"""agpo.algos"""
