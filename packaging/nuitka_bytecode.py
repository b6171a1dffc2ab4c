"""A Nuitka user plugin: third-party libraries stay bytecode; stronghold-init's own code becomes C.

Only `injector` (and the entry point) is on the start path that decides
start-up time; the libraries (tenacity, python-dotenv, and the audit's
requests stack) run off it or after the app started. As bytecode they take a
fraction of the bytes and none of the C compile time they take as C, and load
as fast as the venv's .pyc files do.
"""

from nuitka.plugins.PluginBase import NuitkaPluginBase

# Third-party libraries the bundle carries (scripts/build-bundle, LIBRARIES) and what they import.
BYTECODE_LIBRARIES = (
    "tenacity",
    "dotenv",
    "requests",
    "urllib3",
    "idna",
    "charset_normalizer",
    "certifi",
    "detect_secrets",
    "dockerfile_parse",
    "yaml",
    "zstandard",  # its Python part; the decompressor itself is its C extension module, copied as is
)


class NuitkaPluginStrongholdBytecode(NuitkaPluginBase):
    plugin_name = "stronghold-bytecode"
    plugin_desc = "Compile only the injector package to C; libraries stay bytecode."

    @staticmethod
    def isAlwaysEnabled():  # noqa: N802 - Nuitka's plugin API
        return True

    def decideCompilation(self, module_name):  # noqa: N802 - Nuitka's plugin API
        # No opinion on anything else: Nuitka keeps the standard library as bytecode already, and
        # its own helper modules (pre/post-load code) must stay compiled.
        return "bytecode" if module_name.hasOneOfNamespaces(*BYTECODE_LIBRARIES) else None
