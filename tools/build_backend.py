"""PEP 517 build backend of ctcx: setuptools, building against the target environment's torch.

``pip install .`` builds in an isolated environment that holds only the
build requirements of ``pyproject.toml``, so ``setup.py`` could not see the
torch that ctcx has to be compiled against (an extension built against one
torch release does not load in another). pip runs this backend with the
interpreter of the environment it installs into, so that environment's
site-packages are ``sysconfig``'s paths here; they are appended to
``sys.path`` (after the isolated build tools, which keep precedence) before
setuptools runs ``setup.py``. No torch is ever installed to build ctcx: if
the target environment has none, ``setup.py`` stops with a one-line message.

With ``--no-build-isolation`` those directories are on ``sys.path`` already
and nothing changes. Every hook is setuptools' own (``setuptools.build_meta``).
"""
from __future__ import annotations

import os
import site
import sys
import sysconfig


def _target_site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(p for p in (paths.get("purelib"), paths.get("platlib")) if p))


for _path in _target_site_dirs():
    if os.path.isdir(_path) and _path not in sys.path:
        site.addsitedir(_path)  # appends, and runs the directory's .pth files

from setuptools.build_meta import *  # noqa: E402,F401,F403  (the PEP 517 hooks)
from setuptools.build_meta import __all__  # noqa: E402,F401
