"""The agent server as the process sandbox starts it, bound to loopback (see openhands_app.py).

OpenHands runs `python -m <module> --port N`; its own module binds 0.0.0.0 by default.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.argv[1:1] = ["--host", "127.0.0.1"]
    from openhands.agent_server.__main__ import main

    main()
