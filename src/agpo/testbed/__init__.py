"""agpo.testbed"""
