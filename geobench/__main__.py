"""`python -m geobench ...` (what torchrun launches) runs the same CLI as `geobench`."""
from geobench.cli import main

if __name__ == "__main__":
    main()
