"""Platform backends, created on first use so unused SDKs are never imported."""

from __future__ import annotations

import threading


class Backends:
    """platform name -> backend instance, built lazily from settings."""

    def __init__(self, settings, policy=None) -> None:
        self.settings = settings
        self.policy = policy  # the operator's (taobot.policy): which host folders local-docker may mount
        self._made: dict[str, object] = {}
        self._lock = threading.Lock()

    def platform_settings(self):
        """The settings every backend shares, with the operator's cluster profiles from the policy."""
        from dataclasses import replace

        own = self.settings.platform_settings()
        return replace(own, kube_profiles=tuple(self.policy.kubernetes_profiles)) if self.policy else own

    def _make(self, platform: str):
        s = self.settings
        if platform == "slurm":
            from taobot.backends.slurm import SlurmBackend

            return SlurmBackend(self.platform_settings(), container=s.slurm_container)
        if platform == "local-docker":
            from taobot.backends.docker import DockerBackend

            mounts = self.policy.mounts if self.policy is not None else None  # None: no host folder at all
            return DockerBackend(s.runs_dir, settings=self.platform_settings(), mounts=mounts)
        if platform == "kubernetes":
            from taobot.backends.kubernetes import KubernetesBackend

            return KubernetesBackend(self.platform_settings())
        if platform == "lepton":
            from taobot.backends.lepton import LeptonBackend

            return LeptonBackend(s.lepton_api_url)
        if platform == "brev":
            from taobot.backends.brev import BrevBackend

            return BrevBackend(s.brev_api_url)
        raise KeyError(platform)

    def __getitem__(self, platform: str):
        with self._lock:
            if platform not in self._made:
                self._made[platform] = self._make(platform)
            return self._made[platform]

    def __setitem__(self, platform: str, backend) -> None:
        with self._lock:
            self._made[platform] = backend

    def close(self) -> None:
        with self._lock:
            made = list(self._made.values())
        for backend in made:
            close = getattr(backend, "close", None)
            if close:
                close()
