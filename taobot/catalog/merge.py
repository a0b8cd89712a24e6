"""A skill bank's catalog joined with what taobot itself knows (the embedded catalog).

The bank states the facts it publishes: credentials, groups, resources and
storage of each platform, every network with its actions, inputs and images.
taobot adds what only it can know:

- which platforms it can run: those with a backend, i.e. those the embedded
  catalog defines. A bank platform without one (e.g. `virtualenv`) is listed
  as not runnable and never offered; an embedded platform the bank lacks
  (e.g. Lepton) keeps its embedded definition;
- its own names: the bank's `docker` is `local-docker`, and a network the
  bank renamed keeps taobot's name, with the bank's name as an alias;
- what its backends need: credentials they require even where the bank does
  not list them, how they take dataset paths (path forms), and its
  preflight checks;
- the SSH key it makes for each person, first in the SSH identity group;
- descriptions of the credentials the bank only names;
- the value rules of credentials (`with_value_rules`).
"""

from __future__ import annotations

from pathlib import Path

from taobot.catalog.bank import unique_aliases
from taobot.catalog.bank_fields import build
from taobot.catalog.bank_models import normal_name
from taobot.catalog.schema import EMBEDDED, Catalog, Credential, CredentialGroup, Model, NotRunnable, Platform

__all__ = ["with_embedded_knowledge", "with_value_rules"]

NO_BACKEND = "taobot has no backend for this platform"


def with_value_rules(catalog: Catalog, rules_from: Catalog) -> Catalog:
    """`catalog` with the value rules of `rules_from` for credentials it defines without one.

    A skill bank describes credentials but has no value rules; the embedded
    catalog's keep applying, so a bank never loosens what a value may be.
    """
    credentials = {}
    for name, cred in catalog.credentials.items():
        known = rules_from.credentials.get(name)
        if cred.pattern is None and known is not None and known.pattern:
            cred = cred.model_copy(update={"pattern": known.pattern, "shape": known.shape})
        credentials[name] = cred
    return catalog.model_copy(update={"credentials": credentials})


def _same_platform(bank: Platform, ours: Platform) -> bool:
    names = {normal_name(n) for n in (bank.name, *bank.aliases)}
    return normal_name(ours.name) in names or bool(names & {normal_name(a) for a in ours.aliases})


def _joined_platform(bank: Platform, ours: Platform) -> Platform:
    """The bank's facts about a platform taobot runs, under taobot's name, with taobot's path forms and checks.

    What taobot's backend needs is still asked for when the bank does not list
    it (Brev's instance, say): required credentials and groups are the bank's
    plus taobot's own.
    """
    given = bank.resources.model_dump(include=bank.resources.model_fields_set)
    aliases = [a for a in (*ours.aliases, bank.name, *bank.aliases) if normal_name(a) != ours.name]
    required = (
        *bank.required_credentials,
        *(c for c in ours.required_credentials if c not in bank.required_credentials),
    )
    return bank.model_copy(
        update={
            "name": ours.name,
            "aliases": tuple(dict.fromkeys(aliases)),
            "required_credentials": required,
            "credential_groups": _joined_groups(bank.credential_groups, ours.credential_groups),
            "optional_credentials": tuple(o for o in bank.optional_credentials if o.name not in required),
            "display_name": ours.display_name if bank.display_name == bank.name else bank.display_name,
            "description": bank.description or ours.description,
            "resources": ours.resources.model_copy(update=given),
            "path_forms": ours.path_forms,
            "path_schemes": ours.path_schemes,
            "dataset_examples": bank.dataset_examples or ours.dataset_examples,
            "preflight_checks": ours.preflight_checks,
        }
    )


def _joined_groups(bank: tuple[CredentialGroup, ...], ours: tuple[CredentialGroup, ...]) -> tuple[CredentialGroup, ...]:
    """The bank's groups, then taobot's the bank lacks. Members only taobot has (the SSH key it makes for a
    person) come first in a group of the same name, and stay preferred, so a bank never takes them away."""
    mine = {g.name: g for g in ours}
    joined = []
    for group in bank:
        own = mine.get(group.name)
        extra = tuple(m for m in own.one_of if m not in group.one_of) if own else ()
        if own and extra:
            group = group.model_copy(
                update={
                    "one_of": (*extra, *group.one_of),
                    "preferred": own.preferred if own.preferred in extra else group.preferred,
                    "how_to_get": own.how_to_get,
                }
            )
        joined.append(group)
    named = {g.name for g in bank}
    return (*joined, *(g for g in ours if g.name not in named))


def _platforms(bank: Catalog, embedded: Catalog) -> tuple[dict[str, Platform], dict[str, str], dict[str, NotRunnable]]:
    joined: dict[str, Platform] = {}
    sources: dict[str, str] = {}
    not_runnable: dict[str, NotRunnable] = dict(bank.unsupported_platforms)
    for name, platform in bank.platforms.items():
        ours = next((p for p in embedded.platforms.values() if _same_platform(platform, p)), None)
        source = bank.platform_sources.get(name, bank.source)
        if ours is None or ours.name in joined:
            not_runnable[name] = NotRunnable(name=name, reason=NO_BACKEND, source=source)
            continue
        joined[ours.name] = _joined_platform(platform, ours)
        sources[ours.name] = source
    # Embedded order, so the intake offers the platforms as it always does.
    platforms: dict[str, Platform] = {}
    for name, ours in embedded.platforms.items():
        platforms[name] = joined.get(name, ours)
        sources.setdefault(name, EMBEDDED)
    return platforms, sources, not_runnable


def _taobot_name(model: Model, embedded: Catalog, taken: set[str]) -> str | None:
    """taobot's name for a bank network: the same name, or one whose aliases name it, or one it names."""
    bank_names = {normal_name(n) for n in (model.name, *model.aliases)}
    for ours in embedded.models.values():
        if normal_name(ours.name) == normal_name(model.name):
            return ours.name
    for ours in embedded.models.values():
        if normal_name(model.name) in {normal_name(a) for a in ours.aliases} and ours.name not in taken:
            return ours.name
    for ours in embedded.models.values():
        if normal_name(ours.name) in bank_names and ours.name not in taken:
            return ours.name
    return None


def _models(bank: Catalog, embedded: Catalog) -> dict[str, Model]:
    models: dict[str, Model] = {}
    taken = {m for m in bank.models if m in embedded.models}
    for name, model in bank.models.items():
        ours = _taobot_name(model, embedded, taken)
        if ours is None or (ours != name and ours in bank.models):
            models[name] = model
            continue
        taken.add(ours)
        aliases = [a for a in (model.name, *model.aliases, *embedded.models[ours].aliases) if a != ours]
        models[ours] = model.model_copy(update={"name": ours, "aliases": tuple(dict.fromkeys(aliases))})
    return unique_aliases(models)


def _credentials(bank: Catalog, embedded: Catalog) -> dict[str, Credential]:
    """The bank's definitions, except generic ones taobot can describe; embedded ones for what only taobot uses."""
    credentials = dict(embedded.credentials)
    for name, cred in bank.credentials.items():
        if name in bank.generic_credentials and name in embedded.credentials:
            continue
        credentials[name] = cred
    return credentials


def with_embedded_knowledge(bank: Catalog, embedded: Catalog) -> Catalog:
    """The bank's catalog with taobot's platforms, names and credential descriptions joined in (see the module)."""
    platforms, sources, not_runnable = _platforms(bank, embedded)
    fields = dict(bank)
    fields.update(
        platforms=platforms,
        platform_sources=sources,
        unsupported_platforms=not_runnable,
        models=_models(bank, embedded),
        credentials=_credentials(bank, embedded),
        generic_credentials=tuple(n for n in bank.generic_credentials if n not in embedded.credentials),
    )
    # Built again so it is validated: every credential a platform or model names is defined.
    return build(Path(bank.source), "", Catalog, **fields)
