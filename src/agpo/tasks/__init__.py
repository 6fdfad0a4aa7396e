"""agpo.tasks"""
