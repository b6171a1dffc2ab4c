"""A Nuitka user plugin: stronghold-init and the libraries it bundles stay bytecode, not C.

What makes the Nuitka bundle start fast is the interpreter linked into the
executable and every module loaded from a blob inside it (no bootloader, no
site, no search of the file system), not C code: compiling `injector` to C
made start-up about 6% faster (0.88x the venv install's against 0.94x, one
run) and cost 1.6 MB, which the size goal (under 25 MB) could not spare
once the audit brought zstandard. As bytecode our code and the libraries
(tenacity, python-dotenv, shtab, and the audit's requests stack) take a
fraction of the bytes and none of the C compile time, and load as fast as
the venv's .pyc files do. Only the entry point and Nuitka's own helpers are C.

charset_normalizer's wheel ships mypyc-compiled copies of its two detection
modules (0.4 MB of extension modules) beside their sources; requests only
reaches them to guess the charset of a response that names none, which the
audit never reads as text. The plugin takes the sources instead, as bytecode.
"""

from nuitka.plugins.PluginBase import NuitkaPluginBase

# stronghold-init and the libraries the bundle carries (scripts/build-bundle, LIBRARIES) with what they import.
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
    "shtab",
    "injector",  # stronghold-init itself: see the module docstring
)
# Packages whose extension modules are built from sources they also ship: the sources are used.
FROM_SOURCE = ("charset_normalizer",)


class NuitkaPluginStrongholdBytecode(NuitkaPluginBase):
    plugin_name = "stronghold-bytecode"
    plugin_desc = "stronghold-init and its libraries stay bytecode; only the entry point is C."

    @staticmethod
    def isAlwaysEnabled():  # noqa: N802 - Nuitka's plugin API
        return True

    def decideCompilation(self, module_name):  # noqa: N802 - Nuitka's plugin API
        # No opinion on anything else: Nuitka keeps the standard library as bytecode already, and
        # its own helper modules (pre/post-load code) must stay compiled.
        return "bytecode" if module_name.hasOneOfNamespaces(*BYTECODE_LIBRARIES) else None

    def decideRecompileExtensionModules(self, module_name):  # noqa: N802 - Nuitka's plugin API
        # Nuitka's package configuration says "no" for charset_normalizer (its mypyc build); "yes"
        # from a plugin wins over that, and the recompiled module is bytecode by decideCompilation.
        if module_name.hasOneOfNamespaces(*FROM_SOURCE):
            return "yes", "stronghold-init: the pure-Python sources are smaller and fast enough"
        return None
