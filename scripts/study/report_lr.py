"""study_lr.md: the learning-rate search on the validation split."""
from __future__ import annotations

from scripts.study._report_runs import fmt


def lr_markdown(rec: dict, runs: list[dict], command: str) -> str:
    shared = (f"Chosen: {rec.get('chosen') if rec.get('chosen') is not None else 'not yet (runs unfinished)'}."
              if rec.get("validation_accuracy") else "The shared search is not part of this plan (its outcome "
              "is pinned in the plan's variables); the arms' own searches follow.")
    lines = ["# Study: learning-rate search (validation split carved from the training data)", "",
             f"Command: `{command} --report-only`  ",
             f"Rule: {rec.get('rule', 'highest final validation accuracy')}. {shared}",
             f"{('**Blocked:** ' + rec['blocked']) if rec.get('blocked') else ''}", ""]
    for arm, arm_rec in (rec.get("arms") or {}).items():
        source = f"takes `{arm_rec['same_as']}`'s" if arm_rec.get("same_as") else "its own search"
        lines.append(f"- arm `{arm}` ({source}): chosen "
                     f"{arm_rec.get('chosen') if arm_rec.get('chosen') is not None else 'not yet'}"
                     + (f"; **blocked:** {arm_rec['blocked']}" if arm_rec.get("blocked") else ""))
    lines += ["", "| run | finished | final validation accuracy | wall s |", "|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['name']} | {r['finished']} | {fmt(r['final_accuracy'])} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n\nJSON twin: `study_lr.json`.\n"
