"""`python -m modelforge`: the front door (see `modelforge.cli.main`)."""

from modelforge.cli.main import main

if __name__ == "__main__":
    main()
