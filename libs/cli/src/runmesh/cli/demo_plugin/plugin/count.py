"""The demo action: a job that counts, reporting through the `run` object."""

from __future__ import annotations

import math
import time
from typing import ClassVar

from pydantic import BaseModel, Field

from runmesh.plugins import Action


class CountParams(BaseModel):
    """How far to count and how fast."""

    to: int = Field(default=30, ge=1, le=100_000, description="Last number to count to")
    delay_s: float = Field(default=0.1, ge=0, le=10, description="Pause between numbers")


class Count(Action):
    """Counts to `to`; cancellable between numbers."""

    name = "count"
    params_model = CountParams
    progress_categories: ClassVar = {"count": {"description": "Counting", "proportion": 100}}
    metrics_categories: ClassVar = {"count": "Running totals"}
    log_messages: ClassVar = {"COUNT_DONE": {"message": "counted to {}", "level": "success"}}

    def start(self) -> dict[str, float]:
        params: CountParams = self.params  # type: ignore[assignment]
        self.run.log_message(f"counting to {params.to} in a job process")
        total = 0
        for number in range(1, params.to + 1):
            self.run.check_cancelled()
            time.sleep(params.delay_s)
            total += number
            self.run.set_progress(number, params.to, category="count")
            if number % 10 == 0 or number == params.to:
                self.run.set_metrics(
                    {"total": total, "sqrt_total": math.sqrt(total)}, category="count", step=number
                )
        self.run.log_message_with_code("COUNT_DONE", params.to)
        return {"counted": params.to, "total": total}
