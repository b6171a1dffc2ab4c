"""`python -m injector` runs the same entry point as the console script."""

from injector.cli import main

if __name__ == "__main__":
    main()
