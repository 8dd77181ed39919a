"""<out>/study.json: the state of a study, one record per stage/arm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from encoderlab.errors import UserError
from encoderlab.jobs import write_json

STATE_FILE = "study.json"


class State:
    """<out>/study.json: one record per stage/arm, rewritten atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"arms": {}}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise UserError(
                    f"{path}: not valid JSON; delete it to start the study over"
                ) from None
            if not isinstance(self.data, dict) or not isinstance(self.data.get("arms", {}), dict):
                raise UserError(
                    f"{path}: not a study's state (a JSON object with 'arms'); delete it to "
                    "start the study over"
                )
            self.data.setdefault("arms", {})

    def arm(self, name: str) -> dict[str, Any]:
        return self.data["arms"].setdefault(name, {"status": "pending"})

    def set(self, name: str, **fields: Any) -> None:
        self.arm(name).update(fields)
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)
