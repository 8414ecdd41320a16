"""The bundle's program: `SSLStudio` opens the window, `SSLStudio --self-test` checks the
installation, and every `sslstudio` command works the same (`SSLStudio train DATA ...`)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # A frozen program re-executes itself for the child processes PyTorch or the standard
    # library may start; this makes such a child run its task instead of another window.
    multiprocessing.freeze_support()
    from sslstudio.cli import main

    sys.exit(main())
