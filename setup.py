"""Only what pyproject.toml cannot say: the C helpers of the record merge, built by cffi."""

from setuptools import setup

setup(cffi_modules=["src/wirecap/core/formats/_native_build.py:ffibuilder"])
