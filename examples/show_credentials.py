"""The example app: shows what it received from stronghold-init, without printing secrets.

A real app would just read os.environ["STRIPE_SECRET_KEY"] and the file at
os.environ["DATABASE_PASSWORD_FILE"].
"""

import os


def preview(token: str) -> str:
    return f"{token[:8]}... ({len(token)} chars)"


print("example app received:")
print("  STRIPE_SECRET_KEY       (environment):", preview(os.environ["STRIPE_SECRET_KEY"]))
path = os.environ["DATABASE_PASSWORD_FILE"]
with open(path) as handle:
    print(f"  DATABASE_PASSWORD_FILE  (file {path}):", preview(handle.read()))
print("  APP_GREETING            (plain value):", os.environ["APP_GREETING"])
leftovers = sorted(name for name in os.environ if name.startswith("STRONGHOLD_"))
print("  STRONGHOLD_* variables visible to the app:", leftovers or "none")
