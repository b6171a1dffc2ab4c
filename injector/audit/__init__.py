"""`stronghold-init audit`: show that an image holds no credential, or exactly where one hides.

A package of its own that the entrypoint never imports (its dependencies,
requests and detect-secrets, cost more to import than the entrypoint's whole
start-up).  Data flows one way:

    targets  (TARGET string -> a reader)
      -> image     (config, history, layers as streams: archive.py, oci.py, registry.py)
      -> layers    (stream tar members, track whiteouts across layers)
      -> detect    (values -> Finding; the only module that sees a secret value)
      -> report    (text, JSON, SARIF; sees redacted values and fingerprints only)
"""
