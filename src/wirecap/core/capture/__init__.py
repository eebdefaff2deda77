"""core/capture"""
