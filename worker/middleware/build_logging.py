"""JSON log lines in every worker process, tagged with the build they are about.

The Dramatiq thread that handles a build message is bound to its build id from the message's
arrival to its end (Dramatiq's own lines about the message included); the pipeline adds the
deployment id once it has loaded the record.
"""

from __future__ import annotations

import dramatiq

from common.broker import RUN_BUILD_ACTOR
from common.logging_json import bind_build, use_json_logging


class BuildLogging(dramatiq.Middleware):
    def after_process_boot(self, broker) -> None:
        use_json_logging()

    def before_process_message(self, broker, message) -> None:
        if message.actor_name == RUN_BUILD_ACTOR and message.args:
            bind_build(str(message.args[0]))

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        bind_build(None)

    after_skip_message = after_process_message
