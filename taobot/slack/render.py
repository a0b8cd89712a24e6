"""Views to Slack messages and modals: one renderer per view type, each a pure function."""

from __future__ import annotations

from collections.abc import Callable

from taobot.automl.views import ExperimentCard, ExperimentFinal
from taobot.slack.automl_cards import experiment_card, experiment_final
from taobot.slack.blocks import reply
from taobot.slack.cards import intake_card, preflight_card
from taobot.slack.forms import credentials_modal, datasets_modal, image_modal, relaunch_modal
from taobot.slack.home import home_view
from taobot.slack.launch_messages import final_update, launch_posted, status_update, submit_failed
from taobot.slack.workflow_cards import pipeline_card
from taobot.view_text import channel_status_text, intake_detail_text, launch_detail_text
from taobot.views import (
    ChannelStatus,
    CredentialsForm,
    DatasetsForm,
    FinalUpdate,
    HomeView,
    ImageForm,
    IntakeCard,
    IntakeDetail,
    LaunchDetail,
    LaunchPosted,
    PreflightCard,
    RelaunchForm,
    Reply,
    StatusUpdate,
    SubmitFailed,
    View,
)
from taobot.workflows.views import PipelineCard

RENDERERS: dict[type, Callable[..., dict]] = {
    Reply: lambda view: reply(view.text),
    IntakeCard: intake_card,
    IntakeDetail: lambda view: reply(intake_detail_text(view)),
    PreflightCard: preflight_card,
    ChannelStatus: lambda view: reply(channel_status_text(view)),
    LaunchPosted: launch_posted,
    StatusUpdate: status_update,
    FinalUpdate: final_update,
    SubmitFailed: submit_failed,
    LaunchDetail: lambda view: reply(launch_detail_text(view)),
    CredentialsForm: credentials_modal,
    ImageForm: image_modal,
    DatasetsForm: datasets_modal,
    RelaunchForm: relaunch_modal,
    HomeView: home_view,
    PipelineCard: pipeline_card,
    ExperimentCard: experiment_card,
    ExperimentFinal: experiment_final,
}


def render(view: View) -> dict:
    """The Block Kit message (or modal) for a view."""
    return RENDERERS[type(view)](view)
