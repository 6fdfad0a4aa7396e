"""agpo.eval"""
