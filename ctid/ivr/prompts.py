"""The prompt manifest: every recorded prompt, per language, and where its sound file lives.

``conf/prompts/manifest.yaml`` lists the languages (each with the directory
its sound files are in, as Asterisk names them: no extension), the flow
prompts with their wording in every language (the studio's script, and the
text a TTS engine would read), and the pieces :mod:`ctid.ivr.say` joins into
numbers, amounts and dates.  :func:`load_manifest` checks it whole: a prompt
missing in one language, or a number piece missing, is an error naming it.

Text to speech sits behind :class:`ITextToSpeech`: dynamic text (a product's
introduction, a policy) is spoken by it where ``[ivr] tts`` configures one
(:mod:`ctid.ivr.tts`, espeak-ng), else by its recorded fallback prompt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml
from zope.interface import Attribute, Interface

from ctid.ivr import say
from ctid.ivr.model import FlowError


class ITextToSpeech(Interface):
    """A speech synthesiser for text no recorded prompt covers."""

    languages = Attribute("The languages (frozenset of manifest language codes) it speaks.")

    def synthesize(text, language):
        """Fires with the name of a sound file (as STREAM FILE takes it: no extension) speaking ``text`` in
        ``language``; fails when the text cannot be rendered (refused, timed out, engine failure)."""


@dataclass(frozen=True)
class PromptManifest:
    """The languages, their sound directories, and the flow prompts (each exists in every language).

    The number pieces (:data:`ctid.ivr.say.PIECES`) are checked at load and
    live in the same directories.
    """

    path: str
    directories: tuple[tuple[str, str], ...]
    names: frozenset[str]

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages every prompt exists in."""
        return tuple(language for language, _ in self.directories)

    def file(self, name: str, language: str) -> str:
        """The sound file (no extension) of prompt or number piece ``name`` in ``language``."""
        return f"{dict(self.directories)[language]}/{name}"

    def __contains__(self, name: object) -> bool:
        return name in self.names


def _mapping(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise FlowError(where, "must be a mapping")
    return value


def load_manifest(path: str) -> PromptManifest:
    """Read and check the manifest at ``path`` (FlowError naming the file and the prompt on any problem)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise FlowError(path, f"cannot read the prompt manifest: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise FlowError(path, f"not valid YAML: {' '.join(str(e).split())}") from None
    data = _mapping(data, path)
    unknown = set(data) - {"languages", "prompts", "pieces"}
    if unknown:
        raise FlowError(path, f"unknown key {sorted(unknown)[0]!r} (known: languages, prompts, pieces)")
    languages = _mapping(data.get("languages"), f"{path}: languages")
    directories = []
    for language, spec in languages.items():
        if language not in say.LANGUAGES:
            raise FlowError(f"{path}: languages", f"{language!r}: no number pieces for it (known: zh, en)")
        directory = _mapping(spec, f"{path}: languages: {language}").get("directory")
        if not isinstance(directory, str) or not directory.strip("/"):
            raise FlowError(f"{path}: languages: {language}", "needs a directory")
        directories.append((language, directory.rstrip("/")))
    if not directories:
        raise FlowError(path, "languages: list at least one")
    names = set()
    for name, texts in _mapping(data.get("prompts"), f"{path}: prompts").items():
        texts = _mapping(texts, f"{path}: prompt {name}")
        for language, _ in directories:
            if not isinstance(texts.get(language), str) or not texts[language].strip():
                raise FlowError(f"{path}: prompt {name}", f"no {language} wording")
        names.add(str(name))
    pieces = _mapping(data.get("pieces"), f"{path}: pieces")
    for language, _ in directories:
        have = set(_mapping(pieces.get(language), f"{path}: pieces: {language}"))
        missing = sorted(say.PIECES[language] - have)
        if missing:
            raise FlowError(f"{path}: pieces: {language}", f"missing {', '.join(missing[:5])}")
    return PromptManifest(os.path.abspath(path), tuple(directories), frozenset(names))
