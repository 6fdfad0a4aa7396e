"""agpo.integrations"""
