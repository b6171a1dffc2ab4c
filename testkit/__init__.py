"""What the tests and the benchmarks share: real servers, real containers, waiting without sleeps.

    containers     podman/buildah in a scratch configuration; offline Debian and busybox bases
    servers        OpenBao (`bao server -dev`, a Raft cluster), a TCP relay, free ports
    waiting        wait_for (the one polling helper), line readers with deadlines
    audit_builder  image archives (docker-archive, OCI) built from a description, for the audit

Not shipped: the package `injector` is the product.  The tests find this
package through pytest's `pythonpath` (pyproject.toml), the benchmarks through
the repository root on their path; neither reaches into the other's files.
"""
