"""The Trio-native MCP server layer.

Public API of :mod:`trio_mcp_sse.server`; the ``_modules`` are private.
"""

from .._errors import (
    ClientCapabilityError,
    ClientRequestError,
    ClientRequestTimeout,
    MCPError,
    ResourceNotFound,
    ToolError,
)
from .._public import publish
from ._completion import Completion, CompletionRequest
from ._connection import RequestHandler, ServerConnection
from ._content import (
    audio_content,
    embedded_resource,
    image_content,
    resource_contents,
    resource_link,
    text_content,
)
from ._context import Context
from ._input import InputRequired, RequestStateKey
from ._middleware import CallNext, Middleware, RequestInfo
from ._prompts import Prompt, PromptOptions, assistant_message, user_message
from ._protocol import (
    LATEST_PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    CachePolicy,
    LoggingLevel,
)
from ._proxy import UpstreamFactory
from ._resources import Resource, ResourceOptions, ResourceTemplate
from ._server import MCPServer
from ._skills import SKILLS_EXTENSION, Skill, SkillError, SkillFile, load_skills_directory
from ._tasks import TASKS_EXTENSION, TaskSettings
from ._tools import Tool, ToolOptions

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "SKILLS_EXTENSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "TASKS_EXTENSION",
    "CachePolicy",
    "CallNext",
    "ClientCapabilityError",
    "ClientRequestError",
    "ClientRequestTimeout",
    "Completion",
    "CompletionRequest",
    "Context",
    "InputRequired",
    "LoggingLevel",
    "MCPError",
    "MCPServer",
    "Middleware",
    "Prompt",
    "PromptOptions",
    "RequestHandler",
    "RequestInfo",
    "RequestStateKey",
    "Resource",
    "ResourceNotFound",
    "ResourceOptions",
    "ResourceTemplate",
    "ServerConnection",
    "Skill",
    "SkillError",
    "SkillFile",
    "TaskSettings",
    "Tool",
    "ToolError",
    "ToolOptions",
    "UpstreamFactory",
    "assistant_message",
    "audio_content",
    "embedded_resource",
    "image_content",
    "load_skills_directory",
    "resource_contents",
    "resource_link",
    "text_content",
    "user_message",
]

publish(__name__)
