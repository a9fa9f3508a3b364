"""engine.oauth"""
