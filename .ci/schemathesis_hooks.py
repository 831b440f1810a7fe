"""schemathesis hooks for .ci/schemathesis.sh.

The API under test may rotate or delete the very token schemathesis sends (it lists its
owner's tokens and acts on them), after which every request would be 401 and the run
would test nothing. So each token comes from the `pat` CLI on the quickstart's store,
and a new one is minted whenever a request answers 401.
"""

import os
import subprocess

import schemathesis


@schemathesis.auth(retry_on=[401])
class FreshToken:
    def get(self, case, ctx):
        out = subprocess.run(
            [os.environ["PAT_CLI"], "--store", os.environ["PAT_STORE_URL"],
             "token", "create", "-u", "demo", "-n", "schemathesis", "-e", "1h", "-q"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
