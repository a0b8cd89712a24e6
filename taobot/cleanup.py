"""Once a launch has ended, what it left on its platform that holds its secrets is removed: exactly once.

The monitor runs `PlatformCleanup.run` at the end of every cycle. It takes
the ended launches whose cleanup is due (`Store.launches_to_clean`), groups
them by platform connection like polling does, and asks each backend's
`cleanup` (SLURM: one command for all the jobs of a cluster). A launch done
gets `cleaned_at`, so a restart neither skips nor repeats it; a failed one is
tried again after a wait that doubles each time, at most `CLEANUP_ATTEMPTS`
times, and each failure is logged (the reason with every credential value of
the launch scrubbed out). One cycle cleans at most `CLEANUP_BATCH` launches
and stops starting new platform calls after `CLEANUP_BUDGET_S`, so a backlog
(launches that ended before this step existed, an unreachable cluster) never
holds monitoring up.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from taobot.backends.base import JobRef, cleanup_jobs
from taobot.launches import Launch

log = logging.getLogger(__name__)

CLEANUP_ATTEMPTS = 8
CLEANUP_FIRST_WAIT_S = 30  # then 60, 120 … : the last of 8 tries is about an hour after the first
CLEANUP_MAX_WAIT_S = 3600
CLEANUP_BATCH = 50
CLEANUP_BUDGET_S = 20.0


def scrubbed(text: str, values: Mapping[str, str]) -> str:
    """`text` without any of the launch's credential values (4 characters or more), longest first."""
    for value in sorted((v for v in values.values() if isinstance(v, str) and len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, "***")
    return text[:500]


class PlatformCleanup:
    def __init__(
        self,
        store,
        backends,
        credentials: Callable[[Launch], dict[str, str]],
        keep_alive: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.backends = backends
        self.credentials = credentials
        self.keep_alive = keep_alive

    def run(self, now: float) -> tuple[int, int]:
        """Clean up the launches due now: (cleaned, failed)."""
        rows = self.store.launches_to_clean(now, CLEANUP_ATTEMPTS, CLEANUP_BATCH)
        if not rows:
            return 0, 0
        groups: dict[tuple[str, str], list[tuple[Launch, JobRef]]] = defaultdict(list)
        failed = 0
        for row in rows:
            ref = JobRef(row.id, row.job_id or "", {}, {})
            try:
                ref = JobRef(row.id, row.job_id or "", row.detail_map, self.credentials(row))
                backend = self.backends[row.platform]
                key = backend.connection_key(ref)
            except Exception as exc:  # noqa: BLE001 - an unknown platform or a broken row: that launch only
                self._failed(row, ref, f"{type(exc).__name__} finding the {row.platform} backend", now)
                failed += 1
                continue
            groups[(row.platform, key)].append((row, ref))
        cleaned = 0
        started = time.monotonic()
        for (platform, _key), members in groups.items():
            if time.monotonic() - started > CLEANUP_BUDGET_S:
                break  # the rest stays due: the next cycle goes on
            self.keep_alive()
            try:
                results = cleanup_jobs(self.backends[platform], [ref for _, ref in members])
            except Exception as exc:  # noqa: BLE001 - a backend bug must not stop monitoring
                results = {ref.launch_id: f"{type(exc).__name__} while cleaning up on {platform}" for _, ref in members}
            for row, ref in members:
                why = results.get(row.id, "the backend did not say")
                if why is None:
                    self.store.update_launch(row.id, cleaned_at=now, cleanup_error=None, cleanup_retry_at=None)
                    log.info("cleaned up", extra={"launch": row.id, "job": row.job_id, "platform": row.platform})
                    cleaned += 1
                else:
                    self._failed(row, ref, why, now)
                    failed += 1
        return cleaned, failed

    def _failed(self, row: Launch, ref: JobRef, why: str, now: float) -> None:
        attempts = row.cleanup_attempts + 1
        why = scrubbed(why, ref.platform_credentials)
        wait = min(CLEANUP_MAX_WAIT_S, CLEANUP_FIRST_WAIT_S * 2 ** (attempts - 1))
        self.store.update_launch(row.id, cleanup_attempts=attempts, cleanup_retry_at=now + wait, cleanup_error=why)
        extra = {"launch": row.id, "job": row.job_id, "platform": row.platform}
        if attempts >= CLEANUP_ATTEMPTS:
            log.error("cleanup gave up after %d attempts: %s", attempts, why, extra=extra)
        else:
            log.warning(
                "cleanup failed (attempt %d of %d, next in %d s): %s",
                attempts,
                CLEANUP_ATTEMPTS,
                wait,
                why,
                extra=extra,
            )
