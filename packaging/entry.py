"""The bundle's entry point: the same main() as the `stronghold-init` console script."""

from injector.cli import main

main()
