"""engine.metrics"""
