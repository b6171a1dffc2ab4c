"""A Nuitka user plugin: third-party libraries stay bytecode; stronghold-init's own code becomes C.

Only `injector` (and the entry point) is on the start path that decides
start-up time; the libraries (tenacity, python-dotenv, shtab, and the audit's
requests stack) and our own image audit (`injector.audit`, a separate command)
run off it or after the app started. As bytecode they take a fraction of the
bytes and none of the C compile time they take as C, and load as fast as the
venv's .pyc files do.

charset_normalizer's wheel ships mypyc-compiled copies of its two detection
modules (0.4 MB of extension modules) beside their sources; requests only
reaches them to guess the charset of a response that names none, which the
audit never reads as text. The plugin takes the sources instead, as bytecode.
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
    "shtab",
    # Our own image audit: a separate command, off the entrypoint's start path, that spends its time
    # in detect-secrets, tarfile and hashlib. It is 30% of injector's code and 0.7 MB as C.
    "injector.audit",
)
# Packages whose extension modules are built from sources they also ship: the sources are used.
FROM_SOURCE = ("charset_normalizer",)


class NuitkaPluginStrongholdBytecode(NuitkaPluginBase):
    plugin_name = "stronghold-bytecode"
    plugin_desc = "Compile only the injector package (not its audit) to C; libraries stay bytecode."

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
