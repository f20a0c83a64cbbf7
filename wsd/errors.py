"""Errors that tell the user what failed and what to do about it."""


class WsdError(RuntimeError):
    """Base class: the message is meant for a person and names the fix."""


class ToolchainError(WsdError):
    """A system part (chromium, emscripten, node) is missing or unusable."""


class BuildError(WsdError):
    """Building the web runtime or linking a model failed."""


class ModelFolderError(WsdError):
    """A diffusers model folder is missing a file, or a file in it is malformed."""
