"""engine.lifecycle"""
