"""``sweep --dry-run`` and ``%%avml --dry-run``: what an experiment would do, without starting it.

Shows the sweep settings, the number of configurations, the first configurations the sampler gives (the
same sampler and seed the driver uses; not for Bayesian sampling, whose later choices depend on results),
the resolved run settings of the first configuration, every default filled in, and the check of the
training and validation data (the checks of ``avml validate``: every row, every image).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from jupyter_avml.errors import AvmlError, ConfigError

SHOWN_CONFIGURATIONS = 10
MAX_PROBLEMS_SHOWN = 20
DATA_KEYS = ("training_data", "validation_data")


@dataclass
class DataCheck:
    """One data file of the experiment, checked: its ``ValidationReport``, or why it could not be read."""

    key: str
    value: str
    report: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.report is not None and self.report.ok

    def text(self) -> str:
        if self.error is not None:
            return self.error
        return self.report.format(MAX_PROBLEMS_SHOWN)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "value": self.value, "ok": self.ok, "error": self.error}
        if self.report is not None:
            out.update(rows=self.report.rows, valid=len(self.report.records), classes=self.report.classes,
                       problems=[str(p) for p in self.report.problems])
        return out


class DryRun:
    def __init__(self, name: str, config, workspace=None, *, check_data: bool = True):
        self.name = name
        self.config = config
        self.configurations = self._first_configurations()
        first = self.configurations[0] if self.configurations else {}
        try:
            self.resolved = config.child_config(first)
            self.resolve_error = None
        except ConfigError as exc:  # a sampled combination the driver would mark invalid
            self.resolved, self.resolve_error = None, exc.message
        self.data = self._check_data(workspace) if check_data else []

    @property
    def count(self) -> int:
        """The number of configurations the experiment tries (``iterations``, capped by a grid's size)."""
        return self.config.iterations

    @property
    def skip_invalid(self) -> bool:
        return bool(self.config.fixed.get("skip_invalid"))

    @property
    def data_ok(self) -> bool:
        """Whether the data would be accepted: no problem, or only rows that ``skip_invalid`` leaves out."""
        return all(check.ok or (check.error is None and self.skip_invalid) for check in self.data)

    def _first_configurations(self) -> list[dict[str, Any]]:
        config = self.config
        if not config.has_search_space:
            return [{}]
        if config.sampling == "bayesian":
            return []
        if config.automode is not None:  # AutoMode: its portfolio (the refinements depend on results)
            return config.automode.portfolio[:min(config.iterations, SHOWN_CONFIGURATIONS)]
        from jupyter_avml.sweep.sampling import make_sampler

        sampler = make_sampler(config.sampling, config.space, seed=config.seed)
        out = []
        for _ in range(min(config.iterations, SHOWN_CONFIGURATIONS)):
            trial = sampler.ask()
            if trial is None:
                break
            out.append(trial.params)
        return out

    def _check_data(self, workspace) -> list[DataCheck]:
        """Validate the training data, then the validation data against the training classes."""
        from jupyter_avml.data.validate import validate_jsonl
        from jupyter_avml.workspace import Workspace

        ws = Workspace.resolve(workspace)
        fixed = self.config.fixed
        checks: list[DataCheck] = []
        known = None
        for key in DATA_KEYS:
            value = fixed.get(key)
            if not value:
                continue
            check = DataCheck(key, str(value))
            try:
                path = _data_path(str(value), ws)
                check.report = validate_jsonl(path, self.config.task, prefix_map=fixed.get("image_url_prefix_map"),
                                              cache_dir=ws.cache_dir, known_classes=known)
            except AvmlError as exc:
                check.error = f"{key}: {exc}"
            if key == "training_data" and check.report is not None:
                known = check.report.classes
            checks.append(check)
        return checks

    def settings(self) -> list[tuple[str, str]]:
        from jupyter_avml.dashboard._model import format_duration

        config = self.config
        policy = config.policy_config
        rows = [("experiment", self.name), ("task", config.task), ("primary metric", config.primary_metric),
                ("sampling", config.sampling), ("configurations", str(self.count)),
                ("max concurrent", str(config.max_concurrent_iterations or "all at once (bounded by slots)")),
                ("budget", format_duration(config.budget_seconds)),
                ("early termination", ", ".join(f"{k}={v}" for k, v in policy.items()) if policy else "none")]
        if config.trial_timeout_seconds:
            rows.append(("trial timeout", format_duration(config.trial_timeout_seconds)))
        if config.automode is not None:
            plan = config.automode
            rows.append(("automode", f"{plan.hardware.get('kind', '?')}: {len(plan.subspaces)} portfolio entries, "
                                     f"then Bayesian refinement around the best child"))
            rows += [(f"portfolio {i}", why) for i, why in enumerate(plan.whys)]
            rows += [(f"left out {i}", note) for i, note in enumerate(plan.notes)]
        elif config.has_search_space:
            rows.append(("search space", _space_text(config.space.to_config())))
        if config.beyond_spec:  # allowed here on purpose; a user porting back to the cloud must change them
            rows.append(("beyond the cloud system", "; ".join(config.beyond_spec)))
        return rows

    def data_verdict(self) -> str:
        if not self.data:
            return "data: none to check"
        if all(check.ok for check in self.data):
            return "data: checked, no problems"
        if self.data_ok:
            return "data: problems found; skip_invalid is set, so the rows with problems would be left out"
        return "data: problems found: the experiment would be refused (fix them, or set skip_invalid: 1)"

    def __repr__(self) -> str:
        from jupyter_avml.dashboard._model import format_value

        lines = [f"dry run of {self.name}: {self.count} configuration{'s' if self.count != 1 else ''}, nothing started"]
        lines += [f"  {k}: {v}" for k, v in self.settings()]
        if self.configurations and self.config.has_search_space:
            lines.append("  first configurations:")
            lines += [f"    {k}: {_params_text(p)}" for k, p in enumerate(self.configurations)]
        lines.append("  resolved settings of the first configuration:" if self.resolved is not None
                     else f"  the first configuration is refused: {self.resolve_error}")
        if self.resolved is not None:
            user = self.resolved.user_keys
            lines += [f"    {k}: {format_value(v)}{'' if k in user else '  (default)'}"
                      for k, v in self.resolved.to_dict().items()]
        lines.append(f"  {self.data_verdict()}")
        for check in self.data:
            lines.append(f"    {check.key}:")
            lines += [f"      {line}" for line in check.text().splitlines()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from jupyter_avml.dashboard._model import format_value

        cell = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top;"
        rows = "".join(f'<tr><th style="{cell}">{escape(k)}</th><td style="{cell}">{escape(v)}</td></tr>'
                       for k, v in self.settings())
        parts = [f'<div class="avml-dry-run" data-configurations="{self.count}" '
                 f'data-data-ok="{str(self.data_ok).lower()}" '
                 f'style="font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;">'
                 f'<b>Dry run of {escape(self.name)}</b>: {self.count} configuration'
                 f'{"s" if self.count != 1 else ""}, nothing started.<table>{rows}</table>']
        if self.configurations and self.config.has_search_space:
            items = "".join(f"<li>{escape(_params_text(p))}</li>" for p in self.configurations)
            more = f" (first {len(self.configurations)})" if len(self.configurations) < self.count else ""
            parts.append(f"<div><b>Configurations{more}</b><ol start=\"0\">{items}</ol></div>")
        if self.resolved is not None:
            user = self.resolved.user_keys
            body = "".join(
                f'<tr><td style="{cell}">{"<b>" + escape(k) + "</b>" if k in user else escape(k)}</td>'
                f'<td style="{cell}">{escape(format_value(v))}</td></tr>'
                for k, v in self.resolved.to_dict().items())
            parts.append(f"<details><summary>Resolved settings of the first configuration (bold: set by you)"
                         f"</summary><table>{body}</table></details>")
        else:
            parts.append(f"<div>The first configuration is refused: {escape(str(self.resolve_error))}</div>")
        checks = "".join(f'<div class="avml-data-check" data-key="{escape(c.key)}" data-ok="{str(c.ok).lower()}">'
                         f'<b>{escape(c.key)}</b><pre style="margin:2px 0 6px 0;">{escape(c.text())}</pre></div>'
                         for c in self.data)
        parts.append(f"<div><b>{escape(self.data_verdict())}</b>{checks}</div>")
        parts.append("</div>")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The dry run as JSON (``avml sweep --dry-run --json``)."""
        return {"name": self.name, "configurations": self.count, "settings": dict(self.settings()),
                "first_configurations": self.configurations,
                "resolved": self.resolved.to_dict() if self.resolved is not None else None,
                "refused": self.resolve_error, "data_ok": self.data_ok,
                "data": [check.to_dict() for check in self.data]}


def _data_path(value: str, workspace):
    """A data setting's file: a path, or ``dataset:NAME[:VERSION]`` of the workspace's dataset registry."""
    from jupyter_avml.data.dataset_registry import is_dataset_reference, resolve_dataset_reference

    if is_dataset_reference(value):
        return resolve_dataset_reference(value, workspace=workspace)
    return value


def _params_text(params: dict[str, Any]) -> str:
    from jupyter_avml.dashboard._model import format_value

    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items()) or "defaults"


def _space_text(space: Any) -> str:
    subs = space if isinstance(space, list) else [space]
    return " | ".join(", ".join(f"{k}: {v}" for k, v in sub.items()) for sub in subs)
