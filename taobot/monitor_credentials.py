"""The credential values the monitor polls, cleans up and cancels a launch with: read once per cycle.

A launched thread holds the values its preflight checked (`held_values`); a launch from before values were
held uses its owner's saved ones. During a cycle each thread's values, and each owner's saved ones, are
read and decrypted once, however many of its launches the cycle meets; only the cycle's own thread sees
that cache, and it is dropped when the cycle ends (values may change between cycles).
"""

from __future__ import annotations

import threading

from taobot.catalog import Catalog, find_platform
from taobot.launches import Launch


def platform_credential_names(catalog: Catalog, platform: str) -> list[str]:
    p = find_platform(catalog, platform)
    names = list(p.required_credentials) + [m for g in p.credential_groups for m in g.one_of]
    names += [o.name for o in p.optional_credentials] + list(catalog.s3_required) + list(catalog.s3_optional)
    return list(dict.fromkeys(names + ["HF_TOKEN", "NGC_KEY"]))


class LaunchCredentials:
    def __init__(self, store, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        self._held: dict[tuple[str, str], dict[str, str]] = {}  # (intake, platform) -> values, this cycle
        self._saved: dict[str, tuple[dict[str, str], dict[str, str]]] = {}  # owner -> (fingerprints, values)
        self._cycle_thread: int | None = None

    def begin_cycle(self) -> None:
        self._held, self._saved, self._cycle_thread = {}, {}, threading.get_ident()

    def end_cycle(self) -> None:
        self._held, self._saved, self._cycle_thread = {}, {}, None

    def of(self, launch: Launch) -> dict[str, str]:
        """The values the launch's thread holds (what its preflight checked), else its owner's saved ones."""
        cached = threading.get_ident() == self._cycle_thread
        key = (launch.intake_id, launch.platform)
        if cached and key in self._held:
            return dict(self._held[key])
        names = platform_credential_names(self.catalog, launch.platform)
        values = self.store.held_values(launch.intake_id, names)
        if not values:
            values = self._saved_values(launch.owner, names, cached)
        if cached:
            self._held[key] = values
        return dict(values)

    def _saved_values(self, owner: str, names: list[str], cached: bool) -> dict[str, str]:
        if cached and owner in self._saved:
            fingerprints, values = self._saved[owner]
        else:
            fingerprints, values = self.store.secret_fingerprints(owner), {}
            if cached:
                self._saved[owner] = (fingerprints, values)
        out = {}
        for name in names:
            if name in fingerprints:
                if name not in values:
                    values[name] = self.store.get_secret(owner, name) or ""
                if values[name]:
                    out[name] = values[name]
        return out
