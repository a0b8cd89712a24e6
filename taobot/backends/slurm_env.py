"""A SLURM job's env file: the one place its secrets exist on the cluster, and only until the job read it.

The file (`<launch dir>/sbatch/job.env`, `KEY='value'` lines) is created
under `umask 077` by `cat` over the backend's SSH connection, so it is 0600
from its first byte, and the content travels on stdin, never in a command
line. The batch script's first steps (`read_env_lines`) source it with
every variable exported — `srun` hands them to each task of a multi-node
job — and remove it before TAO starts. `cleanup_script` removes the files of
many launches in one command and says which could not be removed.
"""

from __future__ import annotations

from taobot.preflight.base import quote

ENV_FILE = "job.env"
DEFAULT_BASE = "~/tao-results"
END_MARK = "END|cleanup"


def env_file(values: dict[str, str]) -> str:
    return "".join(f"{k}={quote(v)}\n" for k, v in sorted(values.items()))


def env_path(launch_dir: str) -> str:
    return f"{launch_dir}/sbatch/{ENV_FILE}"


def read_env_lines(path: str) -> list[str]:
    """The script's first steps: read the env file once, exporting every variable, and remove it at once.

    A source that fails still removes the file before the script stops; a missing file (a requeued run, a
    second start) ends the job with a message saying so instead of running TAO without its credentials."""
    p = quote(path)
    return [
        "# The job's secrets: read once from the 0600 env file beside this script (never written into it), then",
        "# removed before TAO starts. Exported, so srun hands them to every task.",
        f"if [ ! -f {p} ]; then",
        f'  echo "taobot: {ENV_FILE} is gone: it is read once and removed, so this job cannot start again; '
        'launch it again from its thread" >&2',
        "  exit 1",
        "fi",
        f"set -a; . {p} || {{ rc=$?; rm -f -- {p}; exit $rc; }}; set +a",
        f"rm -f -- {p}",
    ]


def remote_word(path: str) -> str:
    """`path` as one shell word; a leading `~/` stays the remote home (`"$HOME"/...`), the rest is quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + quote(path[2:])
    return quote(path)


def write_private(client, path: str, content: str) -> tuple[bool, str]:
    """Write `content` to a new file only its owner can read: (written, the shell's complaint if not).

    `umask 077` is set before `cat` creates the file, so it is never readable by others, not even empty;
    a file of that name is removed first, so an old mode cannot survive. Transport errors propagate."""
    command = f"umask 077 && rm -f -- {quote(path)} && cat > {quote(path)}; echo RC=$?"
    stdin, stdout, stderr = client.exec_command(command, timeout=60)
    stdin.write(content)
    stdin.channel.shutdown_write()
    out = stdout.read().decode("utf-8", "replace")
    problem = stderr.read().decode("utf-8", "replace").strip()
    return out.strip().splitlines()[-1:] == ["RC=0"], problem


def cleanup_script(words: dict[str, str]) -> str:
    """`rm -f` every launch's env file (launch id -> its path as a shell word), naming those still there."""
    lines = [
        f"rm -f -- {word}; [ -e {word} ] && echo {quote('LEFT|' + launch_id)}" for launch_id, word in words.items()
    ]
    return "\n".join([*lines, f"echo {quote(END_MARK)}"]) + "\n"


def parse_cleanup_output(out: str, launch_ids: list[str]) -> dict[str, str | None]:
    """launch id -> None (removed, or never there), or why not; no end mark means the command did not finish."""
    lines = out.splitlines()
    if END_MARK not in lines:
        return {i: "the login node did not finish removing the env files" for i in launch_ids}
    left = {line.split("|", 1)[1] for line in lines if line.startswith("LEFT|")}
    return {i: (f"could not remove {ENV_FILE} of launch {i}" if i in left else None) for i in launch_ids}
