"""Build configuration beyond pyproject.toml: the relay's optional native copy loop.

The extension is optional: without a C compiler (or on a platform without
epoll) the build goes on without it and the relay keeps its Python path.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "sockkit.relay._fastpath",
            ["src/sockkit/relay/_fastpath.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-parameter"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
