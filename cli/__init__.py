"""The `buildfarm` command line client."""

import sys

# httpx imports its own command line (click, rich, pygments) whenever those are installed, as
# they are beside the API's uvicorn and the tests' schemathesis: 0.1 s of CPU at every start of
# this CLI, which never uses it. httpx expects that import to fail and then does without it.
sys.modules.setdefault("httpx._main", None)
