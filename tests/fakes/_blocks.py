"""Validation of Block Kit payloads and modal views, as Slack enforces it.

Only the documented limits that matter for a bot are checked; every problem
is reported the way Slack phrases it in ``response_metadata.messages``::

    [ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]
"""

from __future__ import annotations

from typing import Any, List, Set

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100

BLOCK_TYPES = {
    "actions",
    "call",
    "context",
    "context_actions",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
}

SELECT_TYPES = {
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "multi_external_select",
    "multi_users_select",
    "multi_conversations_select",
    "multi_channels_select",
}

ELEMENT_TYPES = SELECT_TYPES | {
    "button",
    "checkboxes",
    "datepicker",
    "datetimepicker",
    "email_text_input",
    "file_input",
    "image",
    "number_input",
    "overflow",
    "plain_text_input",
    "radio_buttons",
    "rich_text_input",
    "timepicker",
    "url_text_input",
    "workflow_button",
}


class Validator:
    """Collects Slack-style ``[ERROR] …`` messages."""

    def __init__(self) -> None:
        self.errors: List[str] = []

    # -- primitives -------------------------------------------------------
    def err(self, message: str, pointer: str) -> None:
        self.errors.append(f"[ERROR] {message} [json-pointer:{pointer}]")

    def max_len(self, value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.err(f"must be less than {limit + 1} characters", pointer)

    def string(self, obj: dict, key: str, pointer: str, limit: int, required: bool = False) -> None:
        if key not in obj or obj[key] is None:
            if required:
                self.err(f"missing required field: {key}", pointer)
            return
        value = obj[key]
        if not isinstance(value, str):
            self.err("must be a string", f"{pointer}/{key}")
            return
        self.max_len(value, limit, f"{pointer}/{key}")

    def text_object(
        self,
        obj: Any,
        pointer: str,
        limit: int,
        plain_only: bool = False,
        min_len: int = 1,
    ) -> None:
        if not isinstance(obj, dict):
            self.err("must be an object", pointer)
            return
        kind = obj.get("type")
        allowed = {"plain_text"} if plain_only else {"plain_text", "mrkdwn"}
        if kind not in allowed:
            expected = " or ".join(sorted(allowed))
            self.err(f"must be a valid enum value ({expected})", f"{pointer}/type")
        text = obj.get("text")
        if not isinstance(text, str):
            self.err("missing required field: text", pointer)
            return
        if len(text) < min_len:
            self.err(f"must be more than {min_len - 1} characters", f"{pointer}/text")
        self.max_len(text, limit, f"{pointer}/text")

    # -- block lists ------------------------------------------------------
    def blocks(self, blocks: Any, pointer: str, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.err("must be an array", pointer)
            return
        if len(blocks) > max_blocks:
            self.err(f"no more than {max_blocks} items allowed", pointer)
        seen_block_ids: Set[str] = set()
        for index, block in enumerate(blocks):
            self.block(block, f"{pointer}/{index}", seen_block_ids)

    def block(self, block: Any, pointer: str, seen_block_ids: Set[str]) -> None:
        if not isinstance(block, dict):
            self.err("must be an object", pointer)
            return
        kind = block.get("type")
        if not isinstance(kind, str):
            self.err("missing required field: type", pointer)
            return
        if kind not in BLOCK_TYPES:
            self.err(f"unsupported type: {kind}", f"{pointer}/type")
            return
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str):
                self.err("must be a string", f"{pointer}/block_id")
            else:
                self.max_len(block_id, 255, f"{pointer}/block_id")
                if block_id in seen_block_ids:
                    self.err("duplicate block_id", f"{pointer}/block_id")
                seen_block_ids.add(block_id)
        action_ids: Set[str] = set()
        if kind == "section":
            self.section(block, pointer, action_ids)
        elif kind == "header":
            if "text" not in block:
                self.err("missing required field: text", pointer)
            else:
                self.text_object(block["text"], f"{pointer}/text", 150, plain_only=True)
        elif kind == "actions":
            self.element_list(block.get("elements"), f"{pointer}/elements", 25, action_ids)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.err("must provide at least 1 element", f"{pointer}/elements")
            else:
                if len(elements) > 10:
                    self.err("no more than 10 items allowed", f"{pointer}/elements")
                for index, element in enumerate(elements):
                    el_ptr = f"{pointer}/elements/{index}"
                    if isinstance(element, dict) and element.get("type") in ("plain_text", "mrkdwn"):
                        self.text_object(element, el_ptr, 3000)
                    elif isinstance(element, dict) and element.get("type") == "image":
                        self.image(element, el_ptr)
                    else:
                        self.err("must be a text object or an image element", el_ptr)
        elif kind == "input":
            if "label" not in block:
                self.err("missing required field: label", pointer)
            else:
                self.text_object(block["label"], f"{pointer}/label", 2000, plain_only=True)
            if "hint" in block:
                self.text_object(block["hint"], f"{pointer}/hint", 2000, plain_only=True)
            if "element" not in block:
                self.err("missing required field: element", pointer)
            else:
                self.element(block["element"], f"{pointer}/element", action_ids)
        elif kind == "image":
            self.image(block, pointer)
            if "title" in block:
                self.text_object(block["title"], f"{pointer}/title", 2000, plain_only=True)
        elif kind == "markdown":
            if not isinstance(block.get("text"), str):
                self.err("missing required field: text", pointer)
            else:
                self.max_len(block["text"], 12000, f"{pointer}/text")

    def section(self, block: dict, pointer: str, action_ids: Set[str]) -> None:
        has_text = "text" in block and block["text"] is not None
        fields = block.get("fields")
        if not has_text and not fields:
            self.err("must provide either text or fields", pointer)
        if has_text:
            self.text_object(block["text"], f"{pointer}/text", 3000)
        if fields is not None:
            if not isinstance(fields, list):
                self.err("must be an array", f"{pointer}/fields")
            else:
                if len(fields) > 10:
                    self.err("no more than 10 items allowed", f"{pointer}/fields")
                for index, item in enumerate(fields):
                    self.text_object(item, f"{pointer}/fields/{index}", 2000)
        if block.get("accessory") is not None:
            self.element(block["accessory"], f"{pointer}/accessory", action_ids)

    def image(self, obj: dict, pointer: str) -> None:
        if not obj.get("image_url") and not obj.get("slack_file"):
            self.err("must provide either image_url or slack_file", pointer)
        self.string(obj, "image_url", pointer, 3000)
        self.string(obj, "alt_text", pointer, 2000, required=True)

    # -- interactive elements --------------------------------------------
    def element_list(self, elements: Any, pointer: str, max_items: int, action_ids: Set[str]) -> None:
        if not isinstance(elements, list) or not elements:
            self.err("must provide at least 1 element", pointer)
            return
        if len(elements) > max_items:
            self.err(f"no more than {max_items} items allowed", pointer)
        for index, element in enumerate(elements):
            self.element(element, f"{pointer}/{index}", action_ids)

    def element(self, element: Any, pointer: str, action_ids: Set[str]) -> None:
        if not isinstance(element, dict):
            self.err("must be an object", pointer)
            return
        kind = element.get("type")
        if not isinstance(kind, str):
            self.err("missing required field: type", pointer)
            return
        if kind not in ELEMENT_TYPES:
            self.err(f"unsupported type: {kind}", f"{pointer}/type")
            return
        if kind == "image":
            self.image(element, pointer)
            return
        action_id = element.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str):
                self.err("must be a string", f"{pointer}/action_id")
            else:
                self.max_len(action_id, 255, f"{pointer}/action_id")
                if action_id in action_ids:
                    self.err("duplicate action_id", f"{pointer}/action_id")
                action_ids.add(action_id)
        if kind == "button":
            if "text" not in element:
                self.err("missing required field: text", pointer)
            else:
                self.text_object(element["text"], f"{pointer}/text", 75, plain_only=True)
            self.string(element, "value", pointer, 2000)
            self.string(element, "url", pointer, 3000)
            style = element.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.err("must be a valid enum value (primary or danger)", f"{pointer}/style")
        if "placeholder" in element:
            self.text_object(element["placeholder"], f"{pointer}/placeholder", 150, plain_only=True)
        if kind in ("static_select", "multi_static_select"):
            options = element.get("options")
            groups = element.get("option_groups")
            if options is None and groups is None:
                self.err("must provide either options or option_groups", pointer)
            if options is not None:
                self.options(options, f"{pointer}/options", 100)
            if groups is not None:
                if not isinstance(groups, list) or len(groups) > 100:
                    self.err("no more than 100 items allowed", f"{pointer}/option_groups")
                else:
                    for index, group in enumerate(groups):
                        gptr = f"{pointer}/option_groups/{index}"
                        if not isinstance(group, dict):
                            self.err("must be an object", gptr)
                            continue
                        self.text_object(group.get("label"), f"{gptr}/label", 75, plain_only=True)
                        self.options(group.get("options"), f"{gptr}/options", 100)
        elif kind in ("checkboxes", "radio_buttons"):
            self.options(element.get("options"), f"{pointer}/options", 10, any_text=True)
        elif kind == "overflow":
            options = element.get("options")
            self.options(options, f"{pointer}/options", 5)
            if isinstance(options, list) and len(options) < 2:
                self.err("must provide at least 2 items", f"{pointer}/options")

    def options(self, options: Any, pointer: str, max_items: int, any_text: bool = False) -> None:
        if not isinstance(options, list) or not options:
            self.err("must provide at least 1 item", pointer)
            return
        if len(options) > max_items:
            self.err(f"no more than {max_items} items allowed", pointer)
        for index, option in enumerate(options):
            optr = f"{pointer}/{index}"
            if not isinstance(option, dict):
                self.err("must be an object", optr)
                continue
            self.text_object(option.get("text"), f"{optr}/text", 75, plain_only=not any_text)
            self.string(option, "value", optr, 150, required=True)


def validate_message_blocks(blocks: Any) -> List[str]:
    v = Validator()
    v.blocks(blocks, "/blocks", MESSAGE_MAX_BLOCKS)
    return v.errors


def validate_view(view: Any, allowed_types=("modal",)) -> List[str]:
    v = Validator()
    ptr = "/view"
    if not isinstance(view, dict):
        v.err("must be an object", ptr)
        return v.errors
    kind = view.get("type")
    if kind not in allowed_types:
        v.err(f"must be a valid enum value ({' or '.join(allowed_types)})", f"{ptr}/type")
    if kind == "modal":
        if "title" not in view:
            v.err("missing required field: title", ptr)
        else:
            v.text_object(view["title"], f"{ptr}/title", 24, plain_only=True)
        for key in ("submit", "close"):
            if view.get(key) is not None:
                v.text_object(view[key], f"{ptr}/{key}", 24, plain_only=True)
    if "blocks" not in view:
        v.err("missing required field: blocks", ptr)
    else:
        v.blocks(view["blocks"], f"{ptr}/blocks", VIEW_MAX_BLOCKS)
        if (
            kind == "modal"
            and isinstance(view["blocks"], list)
            and any(isinstance(b, dict) and b.get("type") == "input" for b in view["blocks"])
            and view.get("submit") is None
        ):
            v.err("must provide a submit property when using input blocks", ptr)
    v.string(view, "private_metadata", ptr, 3000)
    v.string(view, "callback_id", ptr, 255)
    v.string(view, "external_id", ptr, 255)
    return v.errors
