"""engine.tools"""
