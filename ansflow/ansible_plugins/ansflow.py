"""ansflow's Ansible stdout callback (loaded by ansible-playbook, not imported by ansflow).

Each task's result per host is one line (`ok: [web1] Install nginx`, `changed: ...`,
`failed: ... => message`, `skipped: ...`, `unreachable: ...`), plays, tasks and handlers
a header line each, then the recap. The results ansflow reads back (the recap per host, the
first failure, the unreachable hosts) go as JSON to the file named by ANSFLOW_ANSIBLE_EVENTS.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: ansflow
    type: stdout
    short_description: one line per task result, and a JSON summary for ansflow
    description: used by ansflow's ansible step
"""

MAX_MESSAGE = 2000


def _message(result: dict) -> str:
    for key in ("msg", "stderr", "reason", "module_stderr", "exception"):
        value = result.get(key)
        if value:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            return " ".join(text.split())[:MAX_MESSAGE]
    results = result.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict) and item.get("failed"):
                return _message(item)
    return ""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "ansflow"

    def __init__(self) -> None:
        super().__init__()
        self._failures: list[dict] = []
        self._unreachable: list[dict] = []

    def _line(self, text: str, stderr: bool = False) -> None:
        self._display.display(text, stderr=stderr)

    def v2_playbook_on_play_start(self, play) -> None:  # noqa: ANN001
        self._line(f"PLAY [{play.get_name().strip()}]")

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:  # noqa: ANN001
        self._line(f"TASK [{task.get_name().strip()}]")

    def v2_playbook_on_handler_task_start(self, task) -> None:  # noqa: ANN001
        self._line(f"HANDLER [{task.get_name().strip()}]")

    def _host_task(self, result) -> tuple[str, str]:  # noqa: ANN001
        return result._host.get_name(), result._task.get_name().strip()

    def v2_runner_on_ok(self, result) -> None:  # noqa: ANN001
        host, task = self._host_task(result)
        self._handle_warnings(result._result)
        status = "changed" if result._result.get("changed") else "ok"
        self._line(f"{status}: [{host}] {task}")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:  # noqa: ANN001
        host, task = self._host_task(result)
        message = _message(result._result)
        if ignore_errors:
            self._line(f"failed (ignored): [{host}] {task} => {message}")
            return
        self._failures.append({"host": host, "task": task, "message": message})
        self._line(f"failed: [{host}] {task} => {message}", stderr=True)

    def v2_runner_on_skipped(self, result) -> None:  # noqa: ANN001
        host, task = self._host_task(result)
        self._line(f"skipped: [{host}] {task}")

    def v2_runner_on_unreachable(self, result) -> None:  # noqa: ANN001
        host, task = self._host_task(result)
        message = _message(result._result)
        self._unreachable.append({"host": host, "task": task, "message": message})
        self._line(f"unreachable: [{host}] {task} => {message}", stderr=True)

    def v2_runner_item_on_failed(self, result) -> None:  # noqa: ANN001
        host, task = self._host_task(result)
        self._line(f"failed item: [{host}] {task} => {_message(result._result)}")

    def v2_on_file_diff(self, result) -> None:  # noqa: ANN001
        diff = result._result.get("diff")
        if diff:
            text = self._get_diff(diff)
            for line in text.splitlines():
                self._line(line)

    def v2_playbook_on_stats(self, stats) -> None:  # noqa: ANN001
        recap = {}
        self._line("PLAY RECAP")
        for host in sorted(stats.processed.keys()):
            summary = stats.summarize(host)
            recap[host] = {k: int(summary.get(k, 0)) for k in (
                "ok", "changed", "unreachable", "failures", "skipped", "rescued", "ignored")}
            self._line(f"{host}: " + " ".join(f"{k}={v}" for k, v in recap[host].items()))
        path = os.environ.get("ANSFLOW_ANSIBLE_EVENTS")
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({"recap": recap, "failures": self._failures[:20],
                           "unreachable": self._unreachable[:20]}, fh)
