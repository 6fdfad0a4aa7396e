"""agpo.apps.relevance"""
