"""engine.providers"""
