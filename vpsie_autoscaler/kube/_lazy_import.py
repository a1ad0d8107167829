"""Import kubernetes_asyncio without loading its ~1 600 generated API and model modules up front.

Why: kubernetes_asyncio's package ``__init__`` files import every generated API class and model
eagerly. Measured on a 2-core machine: +60 MiB RSS and 1.5-3 s of start-up, for code we never run
(we use the configuration loaders, ``ApiClient.call_api`` and the REST client; objects stay raw JSON).

How: before the first import, put light package modules in ``sys.modules`` for
``kubernetes_asyncio``, ``kubernetes_asyncio.client``, ``kubernetes_asyncio.client.api`` and
``kubernetes_asyncio.client.models``. They have the real ``__path__`` (so submodules import
normally) and resolve every name the real ``__init__`` would have imported on first access (PEP 562
``__getattr__``), from a table read from that ``__init__``'s own ``from X import Y`` lines. Nothing
becomes unreachable — ``ApiClient.deserialize`` still finds ``V1Pod`` — it is only imported when used.

If kubernetes_asyncio was already imported normally, nothing is changed.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

PACKAGE = "kubernetes_asyncio"
LAZY_PACKAGES = (PACKAGE, f"{PACKAGE}.client", f"{PACKAGE}.client.api", f"{PACKAGE}.client.models")
_FROM_IMPORT = re.compile(r"^from\s+([\w.]+)\s+import\s+(\w+)\s*$", re.MULTILINE)
_IMPORT_AS = re.compile(r"^import\s+([\w.]+)\s+as\s+(\w+)\s*$", re.MULTILINE)
_VERSION = re.compile(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)


def _lazy_package(name: str, init: Path) -> types.ModuleType:
    source = init.read_text(encoding="utf-8")
    names: dict[str, tuple[str, str | None]] = {}
    for module, attr in _FROM_IMPORT.findall(source):
        if module != "__future__":
            names[attr] = (module, attr)
    for module, alias in _IMPORT_AS.findall(source):
        names[alias] = (module, None)
    package = types.ModuleType(name)
    package.__file__ = str(init)
    package.__path__ = [str(init.parent)]
    package.__package__ = name
    version = _VERSION.search(source)
    if version:
        package.__version__ = version.group(1)  # type: ignore[attr-defined]

    def __getattr__(attr: str) -> object:
        target = names.get(attr)
        if target is None:
            try:
                value: object = importlib.import_module(f"{name}.{attr}")
            except ModuleNotFoundError:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None
        else:
            module = importlib.import_module(target[0])
            value = module if target[1] is None else getattr(module, target[1])
        setattr(package, attr, value)
        return value

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    return package


def install_lazy_kubernetes_asyncio() -> None:
    """Install the lazy package modules (idempotent; a no-op after a normal import)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return  # not installed: the real import will fail with the usual error
    root = Path(spec.origin).parent
    modules = {}
    for name in LAZY_PACKAGES:
        relative = name.split(".")[1:]
        modules[name] = _lazy_package(name, root.joinpath(*relative, "__init__.py"))
    for name, module in modules.items():
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent in modules:
            setattr(modules[parent], child, module)
