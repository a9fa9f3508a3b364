"""engine.cli"""
