"""engine.mcp"""
