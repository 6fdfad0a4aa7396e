"""agpo.train"""
