"""engine.crypto"""
