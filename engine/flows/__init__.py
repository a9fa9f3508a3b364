"""engine.flows"""
