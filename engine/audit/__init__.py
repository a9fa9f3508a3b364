"""engine.audit"""
