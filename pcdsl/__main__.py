"""`python -m pcdsl`: the command line, as `pcdsl` (what `pcdsl train --nproc` starts each process with)."""
from pcdsl.cli.main import main

if __name__ == "__main__":
    main(prog_name="pcdsl")
