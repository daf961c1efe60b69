"""What a request's `tools`, `tool_choice` and `parallel_tool_calls` ask for, checked against
each other: a problem is a 400 naming the field."""

from dataclasses import dataclass

from modelkube_serving.errors import InvalidRequest
from modelkube_serving.protocol import ChatCompletionRequest
from modelkube_serving.protocol_tools import NamedToolChoice, Tool


@dataclass(frozen=True)
class ToolPlan:
    """The tools shown to the model, and which of them a call is forced to (none: the
    model may answer with text or call any shown tool)."""

    offered: tuple[Tool, ...] = ()
    forced: tuple[Tool, ...] = ()
    parallel: bool = True

    @property
    def active(self) -> bool:
        """Whether calls are parsed out of the output."""
        return bool(self.offered)


def plan_tools(req: ChatCompletionRequest) -> ToolPlan:
    tools = tuple(req.tools or ())
    choice = req.tool_choice
    if choice is not None and not tools:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    _unique_names(tools)
    if not tools or choice == "none":
        return ToolPlan()
    parallel = req.parallel_tool_calls
    if choice is None or choice == "auto":
        return ToolPlan(tools, (), parallel)
    if choice == "required":
        return ToolPlan(tools, tools, parallel)
    return ToolPlan(tools, (_named(tools, choice),), parallel)


def _unique_names(tools: tuple[Tool, ...]) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.function.name
        if name in seen:
            raise InvalidRequest(
                f"Invalid value for 'tools': the function name '{name}' is given twice.",
                param=f"tools.{i}.function.name",
            )
        seen.add(name)


def _named(tools: tuple[Tool, ...], choice: NamedToolChoice) -> Tool:
    name = choice.function.name
    for tool in tools:
        if tool.function.name == name:
            return tool
    known = ", ".join(f"'{t.function.name}'" for t in tools)
    raise InvalidRequest(
        f"Invalid value for 'tool_choice': no function named '{name}' is among the request's "
        f"tools ({known}).",
        param="tool_choice.function.name",
    )
