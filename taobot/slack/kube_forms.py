"""The Kubernetes identity in the credentials form: a cluster profile to pick, or a kubeconfig file to upload.

A kubeconfig with embedded certificates is 5-10 KB, past the 3,000 characters a
`plain_text_input` takes, so the upload is a Block Kit `file_input` (one file):
Slack stores the file privately for the person, the submission names it, and the
bot fetches its text with its own token (`files.info`, then `url_private`; scope
`files:read`, see `slack/files.py`). The profiles offered are only those open to
the launch's owner in its channel; "own-kubeconfig" means the uploaded one.
"""

from __future__ import annotations

from taobot.kube_profiles import OWN_KUBECONFIG, KubeProfile
from taobot.slack.blocks import context, plain
from taobot.slack.forms import CRED_BLOCK_PREFIX, VALUE_ID
from taobot.views import CredentialsForm

PROFILE_BLOCK = CRED_BLOCK_PREFIX + "TAO_K8S_PROFILE"
UPLOAD_BLOCK = CRED_BLOCK_PREFIX + "KUBECONFIG_CONTENT"
IDENTITY_GROUP = "kubernetes_identity"
# never a field in Slack: the upload has its own element, paths and contexts belong to the person's own machine
NOT_IN_SLACK = ("KUBECONFIG_CONTENT", "KUBECONFIG", "TAO_K8S_CONTEXT")
UPLOAD_HINT = (
    "A kubeconfig file. Its user needs a `token`, or `client-certificate-data` + `client-key-data`; `exec`, "
    "`auth-provider` and file paths are refused. Of several contexts the current one is used. "
    "`kubectl config view --minify --flatten --raw > kubeconfig.yaml` writes one. taobot keeps it encrypted and "
    "loads it in memory; the file itself stays in your Slack files, private to you: delete it there once saved."
)


def _option(profile: KubeProfile) -> dict:
    mounts = ", ".join(v.mount_path for v in profile.volumes) or "no volumes"
    return {
        "text": plain(f"{profile.name} — {', '.join(profile.namespaces)}", 75),
        "description": plain(f"mounts: {mounts}", 75),
        "value": profile.name,
    }


def identity_blocks(form: CredentialsForm) -> list[dict]:
    """The profile choice (when any is open to the owner) and the kubeconfig upload."""
    state = form.facts.state
    chosen = " (set)" if "TAO_K8S_PROFILE" in state.credentials else ""
    uploaded = " (set)" if "KUBECONFIG_CONTENT" in state.credentials else ""
    blocks: list[dict] = []
    options = [_option(p) for p in form.kube_profiles[:99]]
    if options:
        options.append(
            {
                "text": plain("My own kubeconfig (uploaded below)", 75),
                "description": plain("what you upload, or uploaded before", 75),
                "value": OWN_KUBECONFIG,
            }
        )
        blocks.append(
            {
                "type": "input",
                "block_id": PROFILE_BLOCK,
                "label": plain(f"Cluster profile{chosen}", 2000),
                "optional": True,
                "element": {
                    "type": "static_select",
                    "action_id": VALUE_ID,
                    "placeholder": plain("Pick a profile, or upload below"),
                    "options": options,
                },
                "hint": plain(
                    "The operator's cluster identities open to you in this channel, each with its namespaces and the "
                    "volumes its Jobs mount. Leave empty to keep what is set.",
                    2000,
                ),
            }
        )
    else:
        blocks.append(
            context(
                "No cluster profile of the operator's is open to you in this channel: upload your own kubeconfig."
                + (" (A profile is set; it is checked again before preflight.)" if chosen else "")
            )
        )
    blocks.append(
        {
            "type": "input",
            "block_id": UPLOAD_BLOCK,
            "label": plain(f"Or upload your own kubeconfig{uploaded}", 2000),
            "optional": True,
            "element": {"type": "file_input", "action_id": VALUE_ID, "max_files": 1},
            "hint": plain(UPLOAD_HINT, 2000),
        }
    )
    return blocks
