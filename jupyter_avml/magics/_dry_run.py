"""``%%avml --dry-run``: what an experiment would do, without starting it.

Shows the sweep settings, the number of configurations, the first configurations the sampler gives (the
same sampler and seed the driver uses; not for Bayesian sampling, whose later choices depend on results) and
the resolved run settings of the first configuration, every default filled in.
"""

from __future__ import annotations

from html import escape
from typing import Any

from jupyter_avml.dashboard._model import format_duration, format_value
from jupyter_avml.errors import ConfigError

SHOWN_CONFIGURATIONS = 10


class DryRun:
    def __init__(self, name: str, config):
        self.name = name
        self.config = config
        self.configurations = self._first_configurations()
        first = self.configurations[0] if self.configurations else {}
        try:
            self.resolved = config.child_config(first)
            self.resolve_error = None
        except ConfigError as exc:  # a sampled combination the driver would mark invalid
            self.resolved, self.resolve_error = None, exc.message

    @property
    def count(self) -> int:
        """The number of configurations the experiment tries (``iterations``, capped by a grid's size)."""
        return self.config.iterations

    def _first_configurations(self) -> list[dict[str, Any]]:
        config = self.config
        if not config.has_search_space:
            return [{}]
        if config.sampling == "bayesian":
            return []
        from jupyter_avml.sweep.sampling import make_sampler

        sampler = make_sampler(config.sampling, config.space, seed=config.seed)
        out = []
        for _ in range(min(config.iterations, SHOWN_CONFIGURATIONS)):
            trial = sampler.ask()
            if trial is None:
                break
            out.append(trial.params)
        return out

    def settings(self) -> list[tuple[str, str]]:
        config = self.config
        policy = config.policy_config
        rows = [("experiment", self.name), ("task", config.task), ("primary metric", config.primary_metric),
                ("sampling", config.sampling), ("configurations", str(self.count)),
                ("max concurrent", str(config.max_concurrent_iterations or "all at once (bounded by slots)")),
                ("budget", format_duration(config.budget_seconds)),
                ("early termination", ", ".join(f"{k}={v}" for k, v in policy.items()) if policy else "none")]
        if config.has_search_space:
            rows.append(("search space", _space_text(config.space.to_config())))
        return rows

    def __repr__(self) -> str:
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
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cell = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top;"
        rows = "".join(f'<tr><th style="{cell}">{escape(k)}</th><td style="{cell}">{escape(v)}</td></tr>'
                       for k, v in self.settings())
        parts = [f'<div class="avml-dry-run" data-configurations="{self.count}" '
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
        parts.append("</div>")
        return "".join(parts)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items()) or "defaults"


def _space_text(space: Any) -> str:
    subs = space if isinstance(space, list) else [space]
    return " | ".join(", ".join(f"{k}: {v}" for k, v in sub.items()) for sub in subs)
