"""The graph checks of a pipeline's steps: each need names another step once, and the needs
form no cycle (a pipeline's steps are at most `MAX_STEPS`, so the recursion stays shallow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def check_needs(name: str, needs: Sequence[str], names: Sequence[str]) -> None:
    """ValueError unless every need is another step, named once."""
    seen: set[str] = set()
    for need in needs:
        if need == name:
            raise ValueError(f"step {name!r} needs itself: remove {need!r} from its needs")
        if need not in names:
            raise ValueError(
                f"step {name!r} needs {need!r}, which is not a step of this pipeline "
                f"(its steps: {', '.join(names)})"
            )
        if need in seen:
            raise ValueError(f"step {name!r} needs {need!r} twice: list it once")
        seen.add(need)


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle of the `needs` graph as `[a, b, a]` (a needs b, b needs a), or None."""
    on_path: list[str] = []
    finished: set[str] = set()

    def visit(node: str) -> list[str] | None:
        on_path.append(node)
        for need in needs[node]:
            if need in on_path:
                return [*on_path[on_path.index(need) :], need]
            if need not in finished and (cycle := visit(need)) is not None:
                return cycle
        on_path.pop()
        finished.add(node)
        return None

    # At most MAX_STEPS deep, so the recursion stays far from Python's limit.
    for node in needs:
        if node not in finished and (cycle := visit(node)) is not None:
            return cycle
    return None
