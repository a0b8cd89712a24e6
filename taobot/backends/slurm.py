"""SLURM backend over one reused paramiko connection per cluster.

Launch stages `<base>/<launch-id>/{specs,sbatch,logs,results}` over SFTP —
the spec and an sbatch script — then the env file holding the job's secrets
(`sbatch/job.env`, created under `umask 077` by `cat` over the same SSH
connection, so it is 0600 from its first byte; never written into the
script), then `sbatch --parsable`.

The env file lives only until the job has read it: the script sources it
and removes it at once, before TAO starts, so a job that crashes or is
cancelled while running leaves none behind; the variables are exported, so
`srun` passes them on to every task of a multi-node job. The job is
submitted `--no-requeue`: a requeued run would find no env file (and
taobot counts preemption and node failures as failures anyway). A job
cancelled before it ran, or a refused submission, would leave the file, so
taobot removes it too (`rm -f`, idempotent): on cancel and when the monitor
sees the launch end (`cleanup_many`: one command for every job of a cluster).
Poll runs ONE command per cluster for every job (`taobot.backends.slurm_poll`): `sacct -P` (or
`squeue` where there is no accounting), TAO's status file, every log's size, and for the jobs
whose update is due their log tails, status records and metric lines (their training progress).
"""

from __future__ import annotations

import logging
import posixpath
import threading
from collections.abc import Iterable

from taobot.backends.base import (
    RESULTS_PLACEHOLDER,
    JobRef,
    JobStatus,
    LaunchSpec,
    Submitted,
)
from taobot.backends.slurm_env import (
    DEFAULT_BASE,
    cleanup_script,
    env_file,
    env_path,
    parse_cleanup_output,
    read_env_lines,
    remote_word,
    write_private,
)
from taobot.backends.slurm_poll import (  # noqa: F401 - normalise, parse_exit_code, parse_poll_output: the poll's parts
    normalise,
    parse_exit_code,
    parse_poll_output,
    poll_script,
)
from taobot.backends.tao_status import TAIL_LINES, status_env
from taobot.config import PlatformSettings
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.identities import log_in, login_key, plan_login
from taobot.preflight.base import quote
from taobot.render import render, render_args

log = logging.getLogger(__name__)

MASTER_PORT = 29500


def hours_to_slurm(hours: float) -> str:
    minutes = max(1, round(hours * 60))
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def sbatch_script(spec: LaunchSpec, launch_dir: str, config_path: str, container: str) -> str:
    creds = spec.platform_credentials
    res = spec.resources
    time_hours = float(creds.get("SLURM_TIME_HOURS") or res.time_hours or 4)
    timeout_hours = float(creds.get("SLURM_TIMEOUT_HOURS") or res.timeout_hours or time_hours * 0.95)
    # Every partition given: sbatch takes the list and starts the job in whichever can run it first.
    partition = ",".join(p.strip() for p in creds.get("SLURM_PARTITION", "").split(",") if p.strip())
    mounts = creds.get("SLURM_CONTAINER_MOUNTS") or res.container_mounts or ""
    command = spec.command.replace("{config_path}", quote(config_path))
    if spec.config_format == "args":
        flat = {k: (f"{launch_dir}/results" if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
        command += " " + " ".join(quote(a) for a in render_args(flat))
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=tao-{spec.model}-{spec.action}-{spec.launch_id}",
        f"#SBATCH --partition={partition}",
        f"#SBATCH --nodes={spec.num_nodes}",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --no-requeue",
    ]
    if spec.num_gpus:
        lines.append(f"#SBATCH --gres=gpu:{spec.num_gpus}")
    cpus = creds.get("SLURM_CPUS_PER_TASK") or res.cpus_per_task
    if cpus:
        lines.append(f"#SBATCH --cpus-per-task={int(cpus)}")
    lines += [
        f"#SBATCH --time={hours_to_slurm(time_hours)}",
        f"#SBATCH --output={launch_dir}/logs/slurm-%j.out",
        f"#SBATCH --error={launch_dir}/logs/slurm-%j.out",
    ]
    if creds.get("SLURM_ACCOUNT"):
        lines.append(f"#SBATCH --account={creds['SLURM_ACCOUNT']}")
    run = command
    if container == "pyxis":
        run = f"srun --container-image={quote(spec.image)} --container-mounts={quote(mounts)} {command}"
    lines += [
        "set -euo pipefail",
        *read_env_lines(env_path(launch_dir)),
        f"export TAO_API_RESULTS_DIR={quote(launch_dir + '/results')}",
        *(f"export {k}={quote(v)}" for k, v in status_env(spec.launch_id, launch_dir + "/results").items()),
        f"export NUM_GPU_PER_NODE={spec.num_gpus}",
        f"export WORLD_SIZE=$(( ${{SLURM_NNODES:-1}} * {spec.num_gpus} ))",
        "export NODE_RANK=${SLURM_NODEID:-0}",
        'export MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-localhost}" 2>/dev/null | head -n 1 || hostname)',
        f"export MASTER_PORT={MASTER_PORT}",
        f'echo "taobot launch {spec.launch_id}: $(date -u +%FT%TZ) on $(hostname)"',
        "# The internal timeout ends the run before SLURM's wall time, so it can save and write status.json.",
        f"timeout --signal=TERM --kill-after=120 {int(timeout_hours * 3600)} {run}",
    ]
    return "\n".join(lines) + "\n"


class SlurmBackend:
    name = "slurm"

    def __init__(self, settings: PlatformSettings | None = None, container: str = "pyxis") -> None:
        self.settings = settings or PlatformSettings()
        self.container = container  # "pyxis" or "none" (bare command, for clusters without a container plugin)
        self._connections: dict[str, object] = {}
        self._lock = threading.Lock()
        self.commands_run = 0  # remote commands issued; the benchmark reads it

    # ------------------------------------------------------------------ connections

    @staticmethod
    def _key(creds) -> str:
        """One connection per cluster login AND identity: two people with the same SLURM_USER never share one."""
        key = login_key(creds)
        return f"{creds.get('SLURM_USER')}@{creds.get('SLURM_HOSTNAME')}#{key.tag if key else '-'}"

    def connection_key(self, job: JobRef) -> str:
        return self._key(job.platform_credentials)

    def _client(self, creds: dict, owner: str | None = None) -> object:
        """The cluster's connection, logged in with the launch's own identity (checked first, every time, for
        `owner` at launch: a key file outside their folder or an agent is refused before any login)."""
        plan, problem = plan_login(creds, owner, self.settings)
        if problem or plan is None:
            why = f"taobot refused to log in: {problem or 'no SSH identity is set'}"
            raise LaunchFailed(why) if owner is not None else BackendUnreachable(why)
        key = self._key(creds)
        with self._lock:
            client = self._connections.get(key)
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return client
            if client is not None:
                client.close()
            login = log_in(plan, creds.get("SLURM_HOSTNAME", ""), creds.get("SLURM_USER", ""), self.settings)
            if not login.ok:
                self._connections.pop(key, None)
                raise BackendUnreachable(
                    "cannot log in to "
                    + (creds.get("SLURM_HOSTNAME") or "?")
                    + ": "
                    + "; ".join(a.detail for a in login.attempts)
                )
            login.client.get_transport().set_keepalive(30)
            self._connections[key] = login.client
            return login.client

    def _run(self, creds: dict, script: str, timeout: float = 60) -> str:
        client = self._client(creds)
        try:
            stdin, stdout, stderr = client.exec_command("/bin/bash -s", timeout=timeout)
            stdin.write(script)
            stdin.channel.shutdown_write()
            out = stdout.read().decode("utf-8", "replace")
            self.commands_run += 1
            return out
        except Exception as exc:  # noqa: BLE001 - any transport failure means "could not ask"
            self.close_connection(creds)
            raise BackendUnreachable(f"SSH command failed: {type(exc).__name__}: {exc}") from exc

    def _write_private(self, creds: dict, path: str, content: str) -> None:
        client = self._client(creds)
        try:
            ok, problem = write_private(client, path, content)
            self.commands_run += 1
        except Exception as exc:  # noqa: BLE001 - any transport failure means "could not ask"
            self.close_connection(creds)
            raise BackendUnreachable(f"SSH command failed: {type(exc).__name__}: {exc}") from exc
        if not ok:
            raise LaunchFailed(f"could not write the job's env file {path}: {problem[:300] or 'no answer'}")

    def close_connection(self, creds: dict) -> None:
        key = self._key(creds)
        with self._lock:
            client = self._connections.pop(key, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients = list(self._connections.values())
            self._connections.clear()
        for client in clients:
            client.close()

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        creds = dict(spec.platform_credentials)
        client = self._client(creds, owner=spec.labels.get("taobot.owner", ""))
        try:
            sftp = client.open_sftp()
        except Exception as exc:  # noqa: BLE001
            self.close_connection(creds)
            raise BackendUnreachable(f"SFTP failed: {exc}") from exc
        try:
            home = sftp.normalize(".")
            base = creds.get("SLURM_BASE_RESULTS_DIR") or DEFAULT_BASE
            if base.startswith("~"):
                base = home + base[1:]
            launch_dir = posixpath.join(base, spec.launch_id)
            for sub in ("", "specs", "sbatch", "logs", "results"):
                _mkdir_p(sftp, posixpath.join(launch_dir, sub) if sub else launch_dir)
            ext = "toml" if spec.config_format == "toml" else "yaml"
            config_path = f"{launch_dir}/specs/{spec.action}.{ext}"
            flat = {k: (f"{launch_dir}/results" if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
            if spec.config_format != "args":
                _write(sftp, config_path, render(flat, spec.config_format))
            _write(
                sftp,
                f"{launch_dir}/sbatch/job.sh",
                sbatch_script(spec, launch_dir, config_path, self.container),
                mode=0o700,
            )
        finally:
            sftp.close()
        secrets_path = env_path(launch_dir)
        self._write_private(creds, secrets_path, env_file(dict(spec.job_env)))
        out = self._run(creds, f'cd {quote(launch_dir)} && sbatch --parsable sbatch/job.sh 2>&1; echo "RC=$?"\n')
        lines = [line for line in out.strip().splitlines() if line]
        rc = lines[-1].removeprefix("RC=") if lines and lines[-1].startswith("RC=") else "?"
        if rc != "0":
            # No job will read the env file: it goes now (and the monitor's cleanup tries again if this fails).
            try:
                self._run(creds, f"rm -f -- {quote(secrets_path)}\n")
            except BackendUnreachable:
                log.warning("could not remove the env file of a refused submission", extra={"launch": spec.launch_id})
            raise LaunchFailed("sbatch refused the job: " + " ".join(lines[:-1])[:500])
        job_id = lines[-2].split(";", 1)[0].strip()
        return Submitted(
            job_id=job_id,
            log_location=f"{launch_dir}/logs/slurm-{job_id}.out",
            results_location=f"{launch_dir}/results",
            details={"launch_dir": launch_dir},
        )

    # ------------------------------------------------------------------ status

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """One SSH command for all jobs of one cluster (callers group by connection_key)."""
        if not jobs:
            return {}
        script, tail_paths, log_paths = poll_script(jobs, set(tails_for))
        out = self._run(dict(jobs[0].platform_credentials), script)
        return parse_poll_output(out, [j.job_id for j in jobs], tail_paths, log_paths)

    def logs(self, job: JobRef, lines: int = TAIL_LINES) -> list[str]:
        d = job.details.get("launch_dir", "")
        out = self._run(
            dict(job.platform_credentials),
            f"tail -n {int(lines)} {quote(f'{d}/logs/slurm-{job.job_id}.out')} 2>/dev/null\n",
        )
        return out.splitlines()

    def cancel(self, job: JobRef) -> None:
        # scancel on a finished or unknown job is not an error for us. A job cancelled while still queued never
        # read its env file: it goes in the same command.
        self._run(
            dict(job.platform_credentials),
            f"scancel {quote(job.job_id)} 2>&1 || true; rm -f -- {self._env_word(job)}\n",
        )

    # ------------------------------------------------------------------ cleanup

    def _env_word(self, job: JobRef) -> str:
        """The job's env file as a shell word: from the launch folder recorded at submit, or (a submission that
        never answered) where launch puts it for this launch id."""
        launch_dir = job.details.get("launch_dir")
        if not launch_dir:
            base = (job.platform_credentials.get("SLURM_BASE_RESULTS_DIR") or DEFAULT_BASE).rstrip("/") or "/"
            launch_dir = posixpath.join(base, job.launch_id)
        return remote_word(env_path(launch_dir))

    def cleanup(self, job: JobRef) -> None:
        why = self.cleanup_many([job])[job.launch_id]
        if why:
            raise BackendUnreachable(why)

    def cleanup_many(self, jobs: list[JobRef]) -> dict[str, str | None]:
        """Remove the env files of these jobs (one cluster) in ONE command: launch id -> None, or why not."""
        if not jobs:
            return {}
        words = {job.launch_id: self._env_word(job) for job in jobs}
        try:
            out = self._run(dict(jobs[0].platform_credentials), cleanup_script(words))
        except BackendUnreachable as exc:
            return {launch_id: exc.message for launch_id in words}
        return parse_cleanup_output(out, list(words))


def _mkdir_p(sftp, path: str) -> None:
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        current = "/".join(parts[:i])
        if not current:
            continue
        try:
            sftp.stat(current)
        except FileNotFoundError:
            sftp.mkdir(current, mode=0o700 if current == path else 0o755)


def _write(sftp, path: str, content: str, mode: int = 0o644) -> None:
    # Create empty, restrict, then write: a secret never sits in a file others can read.
    with sftp.open(path, "w") as fh:
        sftp.chmod(path, mode)
        fh.write(content.encode())
