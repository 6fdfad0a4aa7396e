"""agpo.apps"""
